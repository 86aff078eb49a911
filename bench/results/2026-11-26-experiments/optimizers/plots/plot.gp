# gnuplot script written by polytrain experiment (suite optimizers); run 'gnuplot plot.gp' in this
# folder to redraw loss.png and accuracy.png from the .dat files beside it.
set terminal pngcairo size 1500,600 noenhanced font "sans,11"
set grid
set key outside right top vertical
set xlabel "epoch"
set xrange [0:2.14]
set xtics 1
set output "loss.png"
set multiplot layout 1,2 title "optimizers: loss"
set logscale y
set title "training loss (per step, moving average; log scale)"
set ylabel "loss"
plot "sgd.steps.dat" using 1:2 with lines lw 2 lt 1 title "sgd", \
     "momentum.steps.dat" using 1:2 with lines lw 2 lt 2 title "momentum", \
     "nesterov.steps.dat" using 1:2 with lines lw 2 lt 3 title "nesterov", \
     "adam.steps.dat" using 1:2 with lines lw 2 lt 4 title "adam", \
     "adamw.steps.dat" using 1:2 with lines lw 2 lt 5 title "adamw", \
     "rmsprop.steps.dat" using 1:2 with lines lw 2 lt 6 title "rmsprop"
set logscale y
set title "validation loss (per epoch; log scale)"
set ylabel "loss"
plot "sgd.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "sgd", \
     "momentum.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "momentum", \
     "nesterov.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "nesterov", \
     "adam.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "adam", \
     "adamw.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "adamw", \
     "rmsprop.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "rmsprop"
unset multiplot
set output "accuracy.png"
set multiplot layout 1,2 title "optimizers: accuracy"
unset logscale y
set title "training accuracy (per epoch)"
set ylabel "top-1 %"
plot "sgd.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "sgd", \
     "momentum.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "momentum", \
     "nesterov.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "nesterov", \
     "adam.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "adam", \
     "adamw.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "adamw", \
     "rmsprop.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "rmsprop"
unset logscale y
set title "validation top-1 accuracy (per epoch)"
set ylabel "top-1 %"
plot "sgd.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "sgd", \
     "momentum.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "momentum", \
     "nesterov.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "nesterov", \
     "adam.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "adam", \
     "adamw.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 5 title "adamw", \
     "rmsprop.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 6 title "rmsprop"
unset multiplot
unset output
