#!/bin/bash
# measure.sh PID PORT N : server CPU (utime+stime) per call and RSS over an h2load run
pid=$1; port=$2; n=$3
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$pid/stat; }
h2load -n 20000 -c 4 -m 16 -d "${BODY:-body.bin}" -H 'content-type: application/grpc' -H 'te: trailers' http://127.0.0.1:$port/eventpipe.v1.ProducerService/SendEvent >/dev/null
c0=$(cpu)
out=$(h2load -n $n -c 4 -m 16 -d "${BODY:-body.bin}" -H 'content-type: application/grpc' -H 'te: trailers' http://127.0.0.1:$port/eventpipe.v1.ProducerService/SendEvent)
c1=$(cpu)
echo "$out" | grep -E "^requests:|^status codes|finished in"
echo "cpu_us_per_call=$(echo "($c1-$c0)*1000000/$tick/$n" | bc -l | cut -c1-6) threads=$(ls /proc/$pid/task | wc -l) $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' \t' ' ' | tr '\n' ' ')"
