"""Hidden checks: run by the instructor's grader only, never shipped in a student release."""
