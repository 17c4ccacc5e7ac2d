#!/usr/bin/env bash
# `make test`: every test, as two streams of pytest runs side by side.
#
# The vm tier (qemu under emulation) is four fifths of the suite's time, and run alone it
# kept the two cores only 63 % busy: a guest waits on the other, on a timer, on a reboot.
# So its fleet module (Ansible and the pull agent, ~10 min alone) runs in one stream while
# the other runs every other tier (~5 min) and then the rest of the vm tier (~11 min alone).
# Measured on the 2-core CI machine in one quiet hour: one run after the other 24.5 min;
# the vm tier beside the rest 22 min; these two streams 20.5 min (cores 84 % busy), and
# 16.5 min in a later clean-clone run (76 % busy). What runs side by side is slower (a
# lab's set-up up to 2x): tests wait on what they watch, never on a fixed delay.
# The first stream's log follows once the second is done. Each run has a basetemp of its
# own (two sessions sharing /tmp/pytest-of-root would prune each other's directories), and
# the streams share nothing else: labs, namespaces and their names are per run (a lab's
# netns is named from its state directory, a test's from its pid), and the vm tier starts
# no vblade and attaches no loop device on this host.
#
# Usage: tests/run_suite.sh PYTEST [PYTEST OPTIONS...]; TEST_RUNS: where the runs' files go.
set -u
pytest=("$@")
runs=${TEST_RUNS:-/tmp/aoeprov-make-test}
fleet_module=tests/vm/test_fleet.py
rm -rf "$runs" && mkdir -p "$runs" || exit 1

"${pytest[@]}" -m vm "$fleet_module" --basetemp="$runs/fleet" > "$runs/fleet.log" 2>&1 &
fleet=$!
# Ctrl-C or a CI timeout: the labs' fixtures turn SIGTERM into a teardown
trap 'kill "$fleet" 2>/dev/null; wait "$fleet"; exit 130' INT TERM

echo "== every tier but vm (the vm tier's $fleet_module runs beside it: $runs/fleet.log)"
"${pytest[@]}" -m 'not vm' tests --basetemp="$runs/host"
host=$?
echo "== the vm tier but $fleet_module"
"${pytest[@]}" -m vm tests/vm --ignore="$fleet_module" --basetemp="$runs/vm"
vm=$?
echo "== the vm tier's $fleet_module (running since the start)"
tail -n +1 -f --pid="$fleet" "$runs/fleet.log"
wait "$fleet"
fleet_rc=$?
echo "== exit codes: every tier but vm $host, vm tier $vm, its $fleet_module $fleet_rc"
[ "$host" = 0 ] && [ "$vm" = 0 ] && [ "$fleet_rc" = 0 ]
