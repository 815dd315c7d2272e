"""Leaderboards and the regression gate: pure logic on result rows, which never prints (`render` draws them)."""
