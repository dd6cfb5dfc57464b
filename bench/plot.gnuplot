# bench/plot.gnuplot: bench/results/latest.png from the data files that
# bench/run writes next to its report (run in that directory):
#   throughput.dat  "label" value            one bar per case
#   latency.dat     "label" p50 p95 p99      ms from the commit of create_job (or from its
#                                            acknowledgement; a peer's from that of its enqueue)
#   steady.dat      minute finished/s jobs_MB n_dead_tup task_runs_MB
if (!exists("quick")) quick = ""

set terminal pngcairo size 1200,1500 font "sans,10" noenhanced
set output 'latest.png'
set multiplot layout 3,1 title "workflow benchmark".quick font ",13"

# throughput bars per case, coloured by case (the label's first word)
set title "Throughput per case: rows/s (floor), jobs/s (drain, growth, steady), tasks/s (ext), jobs/s (peer); log scale"
set style fill solid 0.8 border -1
set boxwidth 0.7
set logscale y
set yrange [10:*]
set xrange [-0.6:*]
set offsets 0, 0, graph 0.08, 0
set rmargin 9
set ylabel "per second"
set xtics rotate by -30 scale 0 font ",9" nomirror
set grid ytics
unset key
colour(s) = (s eq "floor") ? 0xa5a5a5 : (s eq "drain") ? 0x4472c4 : (s eq "ext") ? 0x70ad47 : \
            (s eq "growth") ? 0xed7d31 : (s eq "peer") ? 0xc00000 : 0x7030a0
plot 'throughput.dat' using 0:2:(colour(word(strcol(1), 1))):xtic(1) with boxes lc rgb variable, \
     '' using 0:($2 * 1.3):(sprintf("%.0f", $2)) with labels font ",8"

# latency percentiles
set title "Latency from the commit of create_job, or from the acknowledgement of the enqueue (ms; idle workers)"
unset logscale y
set yrange [0:*]
set xrange [*:*]
set offsets 0, 0, 0, 0
set ylabel "ms"
set xtics norotate
set key top left
set style data histograms
set style histogram clustered gap 1
set boxwidth 0.8
plot 'latency.dat' using 2:xtic(1) title "p50" lc rgb "#70ad47", \
     '' using 3 title "p95" lc rgb "#ffc000", \
     '' using 4 title "p99" lc rgb "#c00000"

# steady state per interval
set title "Steady state: jobs finished per second and table sizes"
set style data linespoints
set xlabel "minute"
set ylabel "jobs finished/s"
set y2label "MB (with indexes)"
set xtics auto
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key bottom right
plot 'steady.dat' using 1:2 title "finished/s" axes x1y1 lw 2 lc rgb "#4472c4", \
     '' using 1:3 title "workflow.jobs MB" axes x1y2 lc rgb "#ed7d31", \
     '' using 1:5 title "workflow.task_runs MB" axes x1y2 lc rgb "#a5a5a5"
unset multiplot
