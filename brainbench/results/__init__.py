"""Results: run records, leaderboard tables, plots and the HTML dashboard."""
