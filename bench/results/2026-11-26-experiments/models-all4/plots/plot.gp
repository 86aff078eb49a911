# gnuplot script written by polytrain experiment (suite models); run 'gnuplot plot.gp' in this
# folder to redraw loss.png and accuracy.png from the .dat files beside it.
set terminal pngcairo size 1500,600 noenhanced font "sans,11"
set grid
set key outside right top vertical
set xlabel "epoch"
set xrange [0:2.14]
set xtics 1
set output "loss.png"
set multiplot layout 1,2 title "models: loss"
set logscale y
set title "training loss (per step, moving average; log scale)"
set ylabel "loss"
plot "baseline.steps.dat" using 1:2 with lines lw 2 lt 1 title "baseline", \
     "resnet18.steps.dat" using 1:2 with lines lw 2 lt 2 title "resnet18", \
     "resnet34.steps.dat" using 1:2 with lines lw 2 lt 3 title "resnet34", \
     "wide_resnet18.steps.dat" using 1:2 with lines lw 2 lt 4 title "wide_resnet18"
set logscale y
set title "validation loss (per epoch; log scale)"
set ylabel "loss"
plot "baseline.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "baseline", \
     "resnet18.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "resnet18", \
     "resnet34.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "resnet34", \
     "wide_resnet18.epochs.dat" using 1:3 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "wide_resnet18"
unset multiplot
set output "accuracy.png"
set multiplot layout 1,2 title "models: accuracy"
unset logscale y
set title "training accuracy (per epoch)"
set ylabel "top-1 %"
plot "baseline.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "baseline", \
     "resnet18.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "resnet18", \
     "resnet34.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "resnet34", \
     "wide_resnet18.epochs.dat" using 1:4 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "wide_resnet18"
unset logscale y
set title "validation top-1 accuracy (per epoch)"
set ylabel "top-1 %"
plot "baseline.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 1 title "baseline", \
     "resnet18.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 2 title "resnet18", \
     "resnet34.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 3 title "resnet34", \
     "wide_resnet18.epochs.dat" using 1:5 with linespoints pt 7 ps 0.8 lw 2 lt 4 title "wide_resnet18"
unset multiplot
unset output
