# Sourced by scripts/test and scripts/test-python: the pytest-xdist options they put
# before the caller's arguments. The suite waits on processes, sockets and sleeps far more
# than it computes; 2 workers by default (bench/README.md: 4 crowded a shared 2-core box);
# MINITOWER_TEST_WORKERS changes the count. Whole files go to one worker (loadfile): a
# module's fixtures (a live API, a compose stack) are then set up once, and its tests run
# in their usual order. Passing -n (-n0 for one process) or -p no:xdist leaves it to you.
PARALLEL=(-n "${MINITOWER_TEST_WORKERS:-2}" --dist loadfile)
for arg in "$@"; do
  case "$arg" in
    -n | -n* | --numprocesses | --numprocesses=* | no:xdist | -pno:xdist) PARALLEL=() ;;
  esac
done
