# Shortcuts for the scripts in scripts/ (which work without make, too).
.PHONY: run test lint ci

run:
	./scripts/run-local

test:
	./scripts/test

lint:
	./scripts/lint

ci:
	bash .ci/run
