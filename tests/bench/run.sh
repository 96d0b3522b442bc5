#!/bin/sh
# ssepush against nginx+nchan, side by side: starts each server fresh on a free
# loopback port in a private temp dir, runs every scenario against both in turn
# (A B A B ...), and prints a table of medians with the ratio ssepush/nchan.
# Raw figures: $OUT/raw.tsv; medians: $OUT/results.tsv.
#
# Env: BUILD (build dir, default ../../build), OUT (default $BUILD/bench),
#      BENCH_QUICK=1 (smaller scenarios, 2 rounds: under 3 minutes),
#      BENCH_ROUNDS=N, BENCH_ONLY="a c" (run only these scenarios; a..i, g2),
#      BENCH_HEAVY_ROUNDS=N (rounds of g, g2, h and i, at most; default 2),
#      BENCH_SSEPUSH_FLAGS="--threads 64" (extra broker flags, to try a change).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-$here/../../build}
OUT=${OUT:-$BUILD/bench}
BROKER=$BUILD/ssepush-broker
LOADGEN=$BUILD/loadgen
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
QUICK=${BENCH_QUICK:-0}
ONLY=${BENCH_ONLY:-a b c d e f g g2 h i}
ADDRS=8			# client source addresses 127.0.0.2..127.0.0.9
HEAVY="g g2 h i"	# scenarios run in at most HEAVY_ROUNDS rounds
HEAVY_ROUNDS=${BENCH_HEAVY_ROUNDS:-2}

if [ "$QUICK" = 1 ]; then
	ROUNDS=${BENCH_ROUNDS:-2}
	N_BCAST=20; N_FULL=20000; N_PACED=4000; N_PUB=30000; N_LP=1000; N_STORM=10000
	N_HUGE=30000; N_WIDE=20000; N_WIDE_PUBS=5
	DRAIN=5
else
	ROUNDS=${BENCH_ROUNDS:-3}
	N_BCAST=100; N_FULL=50000; N_PACED=10000; N_PUB=100000; N_LP=2000; N_STORM=16000
	N_HUGE=100000; N_WIDE=50000; N_WIDE_PUBS=10
	DRAIN=10
fi

for f in "$BROKER" "$LOADGEN" "$NCHAN_MODULE"; do
	[ -e "$f" ] || { echo "bench: $f is missing (make bench builds and installs it)" >&2; exit 1; }
done
command -v nginx >/dev/null || { echo "bench: nginx is missing" >&2; exit 1; }

mkdir -p "$OUT"
RAW=$OUT/raw.tsv
RESULTS=$OUT/results.tsv
: > "$RAW"
TMP=$(mktemp -d /tmp/ssepush-bench.XXXXXX)
SERVER_PIDS=""

# Stops whatever this script started (by pid) and removes the temp dir.
cleanup() {
	stop_servers
	stop_redis
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints a loopback TCP port nobody listens on or talks to right now.
free_port() {
	while :; do
		p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 12000 ))
		hex=$(printf '%04X' "$p")
		if ! grep -qi ":$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# Waits until something answers HTTP on port $1 (at most 10 s).
wait_http() {
	i=0
	while ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/healthz"; do
		i=$((i + 1))
		[ $i -lt 200 ] || { echo "bench: nothing answers on port $1" >&2; return 1; }
		sleep 0.05
	done
}

# Stops the servers of the last start_* call and waits for them to exit.
stop_servers() {
	for p in $SERVER_PIDS; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $SERVER_PIDS; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.05
			i=$((i + 1))
		done
		kill -KILL "$p" 2>/dev/null || true
	done
	SERVER_PIDS=""
}

# Starts $1 ssepush broker processes on one port (SO_REUSEPORT), extra flags after.
# Publishers use publish_listen, a second port served by a daemon of its own: the
# recommended setup (publishers are backends; a publish that waits for Redis then
# never shares an event loop with thousands of suspended subscribers).
# Sets PORT, PUB_PORT, SERVER_PIDS and MEASURE_PIDS (the processes whose RSS and CPU count).
start_ssepush() {
	n=$1; shift
	PORT=$(free_port)
	PUB_PORT=$(free_port)
	SERVER_PIDS=""
	k=0
	while [ $k -lt "$n" ]; do
		"$BROKER" --listen "127.0.0.1:$PORT" --publish_listen "127.0.0.1:$PUB_PORT" \
		    --max_connections 19500 ${BENCH_SSEPUSH_FLAGS:-} "$@" \
		    > "$TMP/broker$k.log" 2>&1 &
		SERVER_PIDS="$SERVER_PIDS $!"
		k=$((k + 1))
	done
	for k in $(seq 0 $((n - 1))); do
		i=0
		until grep -q 'ready: listening' "$TMP/broker$k.log"; do
			i=$((i + 1))
			[ $i -lt 200 ] || { cat "$TMP/broker$k.log" >&2; return 1; }
			sleep 0.05
		done
	done
	MEASURE_PIDS=$(echo $SERVER_PIDS | tr ' ' ',')
}

# Writes the nginx+nchan config for $1 workers; $2 = redis URL or empty (memory).
# Settings mirror ssepush's defaults: history_size 100 -> buffer length 100,
# history_ttl 600 -> message timeout 600 s, live-only first connect, no subscriber
# timeout, ping every 300 s. One worker may hold ~19k subscribers: the open-file limit
# (20,000) is the ceiling, so worker_rlimit_nofile 20000. worker_connections is set
# above it on purpose: with 19900, nginx already logs "worker_connections are not
# enough, reusing connections" at ~18k subscribers (it counts more connection slots
# than sockets) and drops live subscribers; the fd limit stays the real bound.
nchan_conf() {
	storage="nchan_message_buffer_length 100;"
	if [ -n "$2" ]; then
		storage="$storage nchan_redis_url $2; nchan_use_redis on;"
	fi
	user=""
	[ "$(id -u)" = 0 ] && user="user root;"
	cat > "$TMP/nginx.conf" <<EOF
load_module $NCHAN_MODULE;
$user
daemon off;
master_process on;
worker_processes $1;
worker_rlimit_nofile 20000;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events {
	worker_connections 32768;
	use epoll;
	multi_accept on;
}
http {
	access_log off;
	client_body_temp_path $TMP/body;
	proxy_temp_path $TMP/proxy;
	fastcgi_temp_path $TMP/fastcgi;
	uwsgi_temp_path $TMP/uwsgi;
	scgi_temp_path $TMP/scgi;
	keepalive_requests 100000000;
	keepalive_timeout 600s;
	client_max_body_size 64k;
	client_body_buffer_size 64k;
	nchan_shared_memory_size 1024m;
	server {
		listen 127.0.0.1:$PORT backlog=4096 reuseport;
		nchan_message_timeout 600s;
		nchan_subscriber_first_message newest;
		nchan_subscriber_timeout 0;
		nchan_eventsource_ping_interval 300;
		$storage
		location ~ ^/events/(.+)\$ { nchan_subscriber eventsource; nchan_channel_id \$1; }
		location ~ ^/lp/(.+)\$ { nchan_subscriber longpoll; nchan_channel_id \$1; }
		location ~ ^/publish/(.+)\$ { nchan_publisher; nchan_channel_id \$1; }
		location = /healthz { return 200 "ok\n"; }
	}
}
EOF
}

# Starts nginx+nchan with $1 workers ($2: redis URL or empty). Measures the workers.
start_nchan() {
	PORT=$(free_port)
	PUB_PORT=$PORT		# nchan publishes through the same server block
	nchan_conf "$1" "${2:-}"
	nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" &
	SERVER_PIDS=$!
	wait_http "$PORT" || { cat "$TMP/nginx-error.log" >&2; return 1; }
	i=0
	MEASURE_PIDS=""
	while [ $i -lt 100 ]; do
		MEASURE_PIDS=$(pgrep -P "$SERVER_PIDS" | tr '\n' ',' | sed 's/,$//')
		[ "$(echo "$MEASURE_PIDS" | tr ',' '\n' | grep -c .)" -ge "$1" ] && break
		sleep 0.05
		i=$((i + 1))
	done
}

# Runs the load generator against the server just started; tags its lines into RAW.
# $1 round, $2 server, $3 scenario, rest: loadgen flags.
load() {
	round=$1 server=$2 scen=$3
	shift 3
	"$LOADGEN" --server "$server" --port "$PORT" --pub-port "$PUB_PORT" --addrs $ADDRS --pids "$MEASURE_PIDS" \
	    --drain-timeout $DRAIN "$@" > "$TMP/lg.out" 2> "$TMP/lg.err" || {
		echo "bench: loadgen failed in scenario $scen on $server:" >&2
		cat "$TMP/lg.err" >&2
	}
	awk -v r="$round" -v s="$server" -v c="$scen" -F'\t' 'NF == 2 { print r "\t" s "\t" c "\t" $1 "\t" $2 }' \
	    "$TMP/lg.out" >> "$RAW"
}

# Starts the server of a 1-process scenario: ssepush, or nchan with one worker.
start_one() {
	if [ "$1" = ssepush ]; then start_ssepush 1; else start_nchan 1; fi
}

# (a) idle: as many subscribers as one process holds; connect rate and RSS each.
scenario_a() {
	start_one "$2"
	load "$1" "$2" a --subs 19000 --channels 19000 --procs 4
	stop_servers
}

# (b) broadcast: one channel, 10k subscribers, publishes paced at 5/s so that each
# fan-out is measured on its own (median fan-out time gives deliveries per second).
scenario_b() {
	start_one "$2"
	load "$1" "$2" b --subs 10000 --channels 1 --procs 2 --pub-conns 1 \
	    --stage "bcast:$N_BCAST:5"
	stop_servers
}

# (c) unicast: 19k subscribers on 19k channels; random channels at full speed, then
# paced at 2,000/s.
scenario_c() {
	start_one "$2"
	load "$1" "$2" c --subs 19000 --channels 19000 --procs 4 --pub-conns 16 --pub-procs 2 \
	    --stage "full:$N_FULL:0" --stage "paced:$N_PACED:2000"
	stop_servers
}

# (d) publish requests alone, to 1,000 channels nobody subscribes to.
scenario_d() {
	start_one "$2"
	load "$1" "$2" d --subs 0 --channels 1000 --pub-conns 16 --pub-procs 2 \
	    --stage "pub:$N_PUB:0"
	stop_servers
}

# (e) long-poll: 1k subscribers on 1k channels, 200 publishes/s.
scenario_e() {
	start_one "$2"
	load "$1" "$2" e --subs 1000 --channels 1000 --procs 1 --longpoll --pub-conns 4 \
	    --stage "lp:$N_LP:200"
	stop_servers
}

# (f) reconnect storm: the subscribers of (c), each primed with one event, drop and
# reconnect at once with Last-Event-ID while publishing goes on at 2,000/s.
scenario_f() {
	start_one "$2"
	load "$1" "$2" f --subs 19000 --channels 19000 --procs 4 --pub-conns 16 --pub-procs 2 \
	    --stage prime:0:0:prime --stage "storm:$N_STORM:2000" --storm-stage storm --storm-after 2
	stop_servers
}

# Starts $1 redis-servers (default 1): REDIS_URLS lists them (blank-separated, the
# brokers' `redis` value: one shard each), RPORT is the first one's port.
start_redis() {
	REDIS_URLS=""
	REDIS_PIDS=""
	RPORT=""
	j=0
	while [ $j -lt "${1:-1}" ]; do
		p=$(free_port)
		redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
		    --dir "$TMP" > "$TMP/redis$j.log" 2>&1 &
		REDIS_PIDS="$REDIS_PIDS $!"
		until redis-cli -p "$p" ping > /dev/null 2>&1; do sleep 0.05; done
		RPORT=${RPORT:-$p}
		REDIS_URLS="${REDIS_URLS:+$REDIS_URLS }redis://127.0.0.1:$p"
		j=$((j + 1))
	done
}

# Stops the redis-servers of start_redis, by pid.
stop_redis() {
	for p in ${REDIS_PIDS:-}; do kill "$p" 2>/dev/null || true; done
	for p in ${REDIS_PIDS:-}; do wait "$p" 2>/dev/null || true; done
	REDIS_PIDS=""
}

# Starts $2 servers on the Redis of start_redis: $2 brokers (on every shard), or nchan
# with $2 workers on its Redis storage, on the first one (nchan cannot shard plain
# servers) ($1 = server). Every broker's bus is up on every shard before any publish.
start_redis_servers() {
	if [ "$1" = ssepush ]; then
		start_ssepush "$2" --redis "$REDIS_URLS"
		shards=$(echo $REDIS_URLS | wc -w)
		for k in $(seq 0 $(($2 - 1))); do
			i=0
			until [ "$(grep -c 'connected as broker' "$TMP/broker$k.log")" -ge "$shards" ]; do
				i=$((i + 1))
				[ $i -lt 200 ] || { cat "$TMP/broker$k.log" >&2; return 1; }
				sleep 0.05
			done
		done
	else
		start_nchan "$2" "redis://127.0.0.1:$RPORT"
	fi
}

# (g) Redis: 3 broker processes on one port and one redis-server, 50k subscribers,
# unicast as in (c); nchan: 3 workers on its Redis storage.
scenario_g() {
	start_redis
	start_redis_servers "$2" 3
	load "$1" "$2" g --subs 50000 --channels 50000 --procs 4 --pub-conns 16 --pub-procs 2 \
	    --stage "full:$N_FULL:0" --connect-timeout 120
	stop_servers
	stop_redis
}

# (g2) (g) over two redis-servers, each channel on one of them (the brokers' `redis`
# lists both); nchan, which cannot shard plain servers, on the first.
scenario_g2() {
	start_redis 2
	start_redis_servers "$2" 3
	load "$1" "$2" g2 --subs 50000 --channels 50000 --procs 4 --pub-conns 16 --pub-procs 2 \
	    --stage "full:$N_FULL:0" --connect-timeout 120
	stop_servers
	stop_redis
}

# (h) 100,000 idle subscribers on 100,000 channels over 6 broker processes on one
# Redis (nchan: 6 workers on its Redis storage): connections/s and RSS per subscriber
# of all the server processes together. 7 client processes (the 20,000-file limit).
scenario_h() {
	start_redis
	start_redis_servers "$2" 6
	load "$1" "$2" h --subs "$N_HUGE" --channels "$N_HUGE" --procs 7 --connect-timeout 180
	stop_servers
	stop_redis
}

# (i) one channel, 50,000 subscribers over 3 processes on one Redis; each publish
# (paced at 1/s so each fan-out is timed alone) is timed until its last receipt.
scenario_i() {
	start_redis
	start_redis_servers "$2" 3
	load "$1" "$2" i --subs "$N_WIDE" --channels 1 --procs 4 --pub-conns 1 \
	    --stage "bcast:$N_WIDE_PUBS:1" --connect-timeout 120
	stop_servers
	stop_redis
}

start=$(date +%s)
echo "bench: $( [ "$QUICK" = 1 ] && echo quick || echo full ) run, $ROUNDS rounds, scenarios: $ONLY"
echo "bench: ssepush $("$BROKER" -V | awk '{print $2}') vs nginx $(nginx -v 2>&1 | sed 's/.*\///') + nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
r=1
while [ $r -le "$ROUNDS" ]; do
	for s in $ONLY; do
		# The multi-process scenarios (50,000-100,000 connections per server) run in the
		# first HEAVY_ROUNDS rounds only: the full run stays near 12 minutes.
		case " $HEAVY " in *" $s "*) [ "$r" -le "$HEAVY_ROUNDS" ] || continue ;; esac
		for server in ssepush nchan; do
			"scenario_$s" "$r" "$server"
		done
	done
	echo "  round $r done ($(( $(date +%s) - start )) s)"
	r=$((r + 1))
done

# Medians per scenario, metric and server, then ratio ssepush/nchan.
awk -F'\t' '
	{ k = $3 "\t" $4; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
	  v[k "\t" $2, ++c[k "\t" $2]] = $5 }
	function median(key,   m, i, j, t, a) {
		m = c[key]; if (m == 0) return ""
		for (i = 1; i <= m; i++) a[i] = v[key, i] + 0
		for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
	}
	END {
		print "scenario\tmetric\tssepush\tnchan\tratio\truns"
		for (i = 1; i <= n; i++) {
			a = median(order[i] "\tssepush"); b = median(order[i] "\tnchan")
			ratio = (a != "" && b != "" && b != 0) ? sprintf("%.2f", a / b) : "-"
			printf "%s\t%s\t%s\t%s\t%d\n", order[i], a, b, ratio, c[order[i] "\tssepush"]
		}
	}' "$RAW" > "$RESULTS"

# The table: the figures the issue asks for, in its order.
echo
echo "| scenario | metric | ssepush | nchan | ssepush/nchan |"
echo "|---|---|---|---|---|"
awk -F'\t' '
	BEGIN {
		split("a connect_rate connections/s|a rss_per_sub_kb KB RSS per subscriber|" \
		    "a cpu_us_per_conn server CPU us per connection|" \
		    "b fanout_rate deliveries/s (fan-out)|b bcast.p50_ms p50 ms|b bcast.p99_ms p99 ms|" \
		    "b bcast.max_ms max ms|b lost events lost|" \
		    "c full.deliv_rate events/s full speed|c full.p50_ms p50 ms full speed|" \
		    "c full.p99_ms p99 ms full speed|c paced.p50_ms p50 ms at 2000/s|" \
		    "c paced.p99_ms p99 ms at 2000/s|c lost events lost|c cpu_s server CPU s|" \
		    "c full.cpu_us_per_event server CPU us per event full speed|" \
		    "d pub.pub_rate publish requests/s|d cpu_s server CPU s|" \
		    "e lp.p50_ms p50 ms|e lp.p99_ms p99 ms|e lost events lost|" \
		    "e lp.cpu_us_per_event server CPU us per event and re-poll|" \
		    "f storm_reconnect_s s until all reconnected|f storm_caughtup_s s until all caught up|" \
		    "f lost events lost|f dup duplicates|" \
		    "g full.deliv_rate events/s|g full.p99_ms p99 ms|g lost events lost|" \
		    "g full.cpu_us_per_event server CPU us per event (all procs)|" \
		    "g2 full.deliv_rate events/s|g2 full.p99_ms p99 ms|g2 lost events lost|" \
		    "h connect_rate connections/s|h rss_per_sub_kb KB RSS per subscriber|h connected subscribers connected|" \
		    "h cpu_us_per_conn server CPU us per connection (all procs)|" \
		    "i fanout_ms ms until the last receipt|i fanout_rate deliveries/s (fan-out)|i bcast.p50_ms p50 ms|i lost events lost", rows, "|")
	}
	NR > 1 { val[$1 " " $2] = $3 "\t" $4 "\t" $5 }
	END {
		names["a"] = "(a) idle 19k"; names["b"] = "(b) broadcast 10k"; names["c"] = "(c) unicast 19k"
		names["d"] = "(d) publish only"; names["e"] = "(e) long-poll 1k"; names["f"] = "(f) reconnect storm"
		names["g"] = "(g) Redis 3 procs"; names["g2"] = "(g2) Redis 3 procs, 2 shards"
		names["h"] = "(h) idle 100k, 6 procs"
		names["i"] = "(i) broadcast 50k, 3 procs"
		for (i = 1; rows[i] != ""; i++) {
			split(rows[i], w, " "); key = w[1] " " w[2]
			label = substr(rows[i], length(w[1]) + length(w[2]) + 3)
			if (!(key in val)) continue
			split(val[key], x, "\t")
			printf "| %s | %s | %s | %s | %s |\n", names[w[1]], label, fmt(x[1]), fmt(x[2]), x[3]
		}
	}
	function fmt(s) { if (s == "") return "-"; s += 0; return s >= 100 ? sprintf("%.0f", s) : sprintf("%.3g", s) }
' "$RESULTS"
echo
echo "bench: $(( $(date +%s) - start )) s; medians in $RESULTS, every run in $RAW"
