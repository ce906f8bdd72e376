# Shortcuts for the scripts in scripts/ (which work without make, too).
.PHONY: dev run test lint ci

dev:
	./scripts/dev

run:
	./scripts/run-local

test:
	./scripts/test

lint:
	./scripts/lint

ci:
	bash .ci/run
