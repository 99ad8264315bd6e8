# Sourced by scripts/bench, bench-query and bench-writes: the release binaries, the service key,
# and hearth started pinned to core 0 on 127.0.0.1:18181 with its data in "$data/db" (the caller
# makes "$data"). The load tool and wrk run on core 1.
bin="${CARGO_TARGET_DIR:-target}/release"
key="bench-service-key-0123456789"
url=http://127.0.0.1:18181

# Starts hearth (again, after a kill, on the same data) and waits until it listens; its pid is
# in $hearth. Its stderr accumulates in "$data/hearth.err".
start_hearth() {
  rm -f "$data/hearth.out"
  HEARTH_SERVICE_KEY="$key" RUST_LOG=warn taskset -c 0 "$bin/hearth" serve --listen 127.0.0.1:18181 --data-dir "$data/db" > "$data/hearth.out" 2>> "$data/hearth.err" &
  hearth=$!
  for _ in $(seq 500); do grep -q "listening on" "$data/hearth.out" 2>/dev/null && return; sleep 0.02; done
  echo "hearth did not start"; cat "$data/hearth.err"; exit 1
}
