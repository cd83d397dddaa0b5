set terminal pngcairo size 1200,600
set output 'layer_output_error.png'
set title 'Per-layer output error vs bf16 (same inputs)'
set xlabel 'linear layer (q,k,v,o,gate,up,down per block)'
set ylabel 'relative Frobenius error'
set logscale y
set key outside right
set grid
plot 'layer_output_error.dat' using 1:3 with linespoints title 'fp8', 'layer_output_error.dat' using 1:4 with linespoints title 'nvfp4-w4a16', 'layer_output_error.dat' using 1:5 with linespoints title 'nvfp4', 'layer_output_error.dat' using 1:6 with linespoints title 'mxfp4', 'layer_output_error.dat' using 1:7 with linespoints title 'hif4', 'layer_output_error.dat' using 1:8 with linespoints title 'sharq-nvfp4', 'layer_output_error.dat' using 1:9 with linespoints title 'sharq-nvfp4-24', 'layer_output_error.dat' using 1:10 with linespoints title 'sharq-mxfp4', 'layer_output_error.dat' using 1:11 with linespoints title 'sharq-hif4', 'layer_output_error.dat' using 1:12 with linespoints title 'sparse-only', 'layer_output_error.dat' using 1:13 with linespoints title 'dense+dense', 'layer_output_error.dat' using 1:14 with linespoints title 'sparse+sparse', 'layer_output_error.dat' using 1:15 with linespoints title 'sharq-nvfp4-pt'
