"""The secrets every local test stack is started with: the bootstrap token that creates a
team and the token runners register with. (The compose stacks of tests/e2e use their
own, tests/support/compose_stack.py.)"""

BOOTSTRAP_TOKEN = "test-bootstrap-token-0123456789"
REGISTRATION_TOKEN = "test-registration-token-0123456789"
