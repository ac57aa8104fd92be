"""Reading Prometheus text in the tests: a scrape as {(name, labels): value}."""
from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels) -> float:
        """The sample with exactly these labels (0 when absent: a counter never incremented)."""
        return self.samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)

    def total(self, name: str, **labels) -> float:
        """The sum over every sample of `name` that has these labels (and any others)."""
        wanted = {(k, str(v)) for k, v in labels.items()}
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def has(self, name: str, **labels) -> bool:
        return (name, frozenset((k, str(v)) for k, v in labels.items())) in self.samples


def scrape_client(client) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    return Scrape(response.get_data(as_text=True))


def scrape_url(url: str, timeout: float = 10) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.status == 200
        return Scrape(response.read().decode())
