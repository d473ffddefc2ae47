"""A Python app the Modal way: one scheduled function and one called on demand.

    python -m flotilla deploy etl_app.py
    python -c 'import flotilla; print(flotilla.Function.lookup("etl-example", "stats").remote([3, 1, 2]))'

Runs on the flotilla/python image (`flotilla image build-base python`).
"""

import statistics

import flotilla

app = flotilla.App("etl-example", image="flotilla/python")


@app.function(schedule=flotilla.Period("1m"), timeout=30)
def heartbeat() -> str:
    print("still here")  # goes to the function's log
    return "ok"


@app.function(cpu=0.25, memory=128, max_containers=2)
def stats(values: list[float]) -> dict[str, float]:
    """Summary statistics of a list of numbers."""
    if not values:
        raise ValueError("no values")
    return {"min": min(values), "max": max(values), "mean": statistics.fmean(values)}
