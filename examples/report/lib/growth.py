"""Found through [app].import_paths, which puts lib/ on the workload's PYTHONPATH."""


def compound(rows: int, growth_percent: float, start: float = 100.0) -> list[tuple[int, float]]:
    value = start
    table = []
    for period in range(1, rows + 1):
        value *= 1 + growth_percent / 100
        table.append((period, round(value, 2)))
    return table
