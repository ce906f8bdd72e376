# Sourced by scripts/test and scripts/test-python: the pytest-xdist options they put
# before the caller's arguments. Serial by default: on a 2-core machine workers did not
# make the suite faster and crowded its start-up timeouts (bench/README.md, "The test
# suite on several workers"). MINITOWER_TEST_WORKERS=N runs N workers; whole files go to
# one worker (loadfile), so a module's fixtures (a live API, a compose stack) are set up
# once and its tests run in their usual order. Passing -n or -p no:xdist leaves it to you.
PARALLEL=()
if [ "${MINITOWER_TEST_WORKERS:-0}" -gt 0 ] 2>/dev/null; then
  PARALLEL=(-n "$MINITOWER_TEST_WORKERS" --dist loadfile)
fi
for arg in "$@"; do
  case "$arg" in
    -n | -n* | --numprocesses | --numprocesses=* | no:xdist | -pno:xdist) PARALLEL=() ;;
  esac
done
