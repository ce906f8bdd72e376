"""MiniTower scheduler: fires cron schedules."""
