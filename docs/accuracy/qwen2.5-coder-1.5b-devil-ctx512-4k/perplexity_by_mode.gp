set terminal pngcairo size 1200,600
set output 'perplexity_by_mode.png'
set title 'Perplexity by mode (log scale)'
set style fill solid 0.6
set boxwidth 0.7
set xtics rotate by -40
set bmargin 10
set rmargin 16
set logscale y
set ylabel 'perplexity'
set grid ytics
plot 'perplexity_by_mode.dat' using 1:3:xtic(2) with boxes notitle
