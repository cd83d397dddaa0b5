set terminal pngcairo size 1000,500
set output 'perplexity_by_mode.png'
set title 'Perplexity by mode'
set style fill solid 0.6
set boxwidth 0.7
set xtics rotate by -40
set ylabel 'perplexity'
set grid ytics
plot 'perplexity_by_mode.dat' using 1:3:xtic(2) with boxes notitle
