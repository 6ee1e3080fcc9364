# ---- values rendered by `sonatarun submit`; every one is a shell-quoted word ----
{{VALUES}}
# ---------------------------------------------------------------------------------

# SONATARUN_PRINT_COMMAND=1 bash <script>: print the command this job runs, one NUL-terminated
# word each, and do nothing else (to check a script before submitting it; the tests use it).
if [ "${SONATARUN_PRINT_COMMAND:-0}" = 1 ]; then
    printf '%s\0' ${LAUNCH[@]+"${LAUNCH[@]}"} ${RUN[@]+"${RUN[@]}"}
    exit 0
fi

cd "$WORKDIR" || { echo "sonatarun: cannot enter $WORKDIR" >&2; exit 1; }
mkdir -p "$OUTPUT_DIR"

# A restarted job (requeued or resubmitted after a checkpoint) continues from the checkpoint.
RESUME=()
if sonatarun_restarted && [ -d "$OUTPUT_DIR/checkpoint" ]; then
    RESUME=(--resume)
    echo "sonatarun: job $(sonatarun_job_id) restarted: resuming from the last checkpoint in $OUTPUT_DIR"
fi

# The walltime/preemption signal reaches this shell; pass it to the run, which finishes the block in
# flight, writes a checkpoint and exits 75. The run goes in the background and we `wait`, because
# bash runs a trap only between commands, never while a foreground command runs.
child=""
forward() {
    echo "sonatarun: SIG$1 received: asking the run to checkpoint and stop"
    if [ -n "$child" ]; then kill -s "$1" "$child" 2>/dev/null || true; fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
sonatarun_before_run

echo "sonatarun: job $(sonatarun_job_id) on $(hostname): ${LAUNCH[*]-} ${RUN[*]} ${RESUME[*]-}"
${LAUNCH[@]+"${LAUNCH[@]}"} "${RUN[@]}" ${RESUME[@]+"${RESUME[@]}"} &
child=$!
rc=0
while :; do
    wait "$child"
    rc=$?
    # `wait` also returns when a trap ran; the run is then still going.
    kill -0 "$child" 2>/dev/null || break
done
child=""  # reaped: a later signal (a requeue sends TERM) must not reach a reused pid
sonatarun_after_run

if [ "$rc" = 75 ]; then
    echo "sonatarun: the run wrote a checkpoint and stopped (exit 75): requeueing job $(sonatarun_job_id)"
    sonatarun_requeue
    exit 75
fi
echo "sonatarun: the run exited with code $rc"
exit "$rc"
