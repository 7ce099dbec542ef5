"""The API keeps its OpenAPI contract: schemathesis fuzzes every operation of /api/schema/ on the real stack.

Once with a staff (Admin) token and once with a client token, on the test database loaded with the demo
data. It fails on any 5xx and on any response the schema does not describe (an undocumented status
code, a body or content type that does not match). The run is bounded and repeatable: a fixed seed, a
fixed number of examples per operation, one worker, no example database; and it can reach nothing but
the stack on 127.0.0.1 (see `_offline_environment`).

By hand, with more cases (about 1,500 per token at 50; each run's full report is `schemathesis.txt`
in the test's tmp_path, next to its schema and config):
    SCHEMATHESIS_MAX_EXAMPLES=50 .venv/bin/python -m pytest tests/integration/test_api_schema.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from broker import services as broker_services
from tests.integration.conftest import Stack, wait_until_quiet
from tests.staff import roles_ensure

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

SEED = 20240308
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))  # per operation and phase
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens, a request sent there fails at once


def _offline_environment() -> dict[str, str]:
    """The fuzzer's environment: any request to a host other than 127.0.0.1 goes to a proxy that does
    not exist, so a link, redirect or server URL in the schema can never reach another host."""
    env = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}
    env.update(HTTP_PROXY=NOWHERE, HTTPS_PROXY=NOWHERE, ALL_PROXY=NOWHERE, NO_PROXY="127.0.0.1")
    env.pop("SCHEMATHESIS_HOOKS", None)
    return env


def _token(who: str) -> str:
    if who == "admin":
        roles_ensure()  # a transactional test's flush empties the role groups
        return broker_services.api_token_for_staff(username="schema-admin", role="Admin").key
    return broker_services.api_token_for_customer(customer_id="000002").key


def _known_identifiers(stack: Stack) -> str:
    """A schemathesis config that gives path parameters real identifiers part of the time: a filled
    order's trades, a resting order, a market-data job, listed tickers and two customers (one of them
    not the client's). Without them almost every call to those operations is a 404."""
    client = httpx.Client(
        base_url=stack.base_url, headers={"Authorization": f"Token {_token('client')}"}, timeout=30, trust_env=False
    )
    symbols = [ticker["symbol"] for ticker in client.get("/api/tickers").json()["results"]][:3]
    order = {"customerId": "000002", "ticker": symbols[0], "quantity": 100}
    filled = client.post("/api/orders", json={**order, "direction": "Buy", "type": "Market", "timeInForce": "IOC"})
    resting = client.post(
        "/api/orders", json={**order, "direction": "Buy", "type": "Limit", "price": "1.00", "timeInForce": "GTC"}
    )
    job = client.post("/api/market-data", json={"tickers": symbols[:1]})
    assert (filled.status_code, resting.status_code, job.status_code) == (201, 201, 202), (filled.text, job.text)
    wait_until_quiet()
    trades = client.get("/api/trades", params={"orderId": filled.json()["orderId"]}).json()["results"]
    assert trades, "the market order did not fill"
    values = {
        "trades": [trade["tradeId"] for trade in trades],
        "orders": [filled.json()["orderId"], resting.json()["orderId"]],
        "jobs": [job.json()["jobId"]],
        "symbols": symbols,
        "customers": ["000002", "000003"],
    }
    parameters = {"trade_id": "trades", "order_id": "orders", "job_id": "jobs", "symbol": "symbols"}
    parameters["customer_id"] = "customers"
    # No state kept between runs (crash replays, probes): every run starts from the same seed alone.
    lines = ["[cache]\nenabled = false\n"]
    lines += [f"[dictionaries.{name}]\nvalues = {json.dumps(found)}\n" for name, found in values.items()]
    lines.append("[parameters]")
    lines += [
        f'"path.{name}" = {{ dictionary = "{source}", probability = 0.5 }}' for name, source in parameters.items()
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("who", ["admin", "client"])
def test_every_operation_keeps_the_openapi_contract(stack: Stack, who: str, tmp_path: Path) -> None:
    # given the demo data and the schema the stack serves, fetched with the caller's token
    call_command("seed_demo", stdout=StringIO())
    token = _token(who)
    auth = f"Token {token}"
    response = httpx.get(f"{stack.base_url}/api/schema/?format=json", headers={"Authorization": auth})
    assert response.status_code == 200, response.text
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(response.json()))
    operations = sum(len(methods) for methods in response.json()["paths"].values())
    config = tmp_path / "schemathesis.toml"
    config.write_text(_known_identifiers(stack))

    # when schemathesis runs every operation of it against the stack
    command = [
        str(SCHEMATHESIS), "--config-file", str(config), "run", str(schema),
        "--url", stack.base_url,
        "--header", f"Authorization: {auth}",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--generation-database", "none",
        "--max-redirects", "0",
        "--request-timeout", "30",
        "--suppress-health-check", "all",
        "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    run = subprocess.run(command, env=_offline_environment(), cwd=tmp_path, capture_output=True, text=True, timeout=900)

    # then every operation was tested and nothing broke the contract
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)  # the whole report, kept with the test's tmp_path
    tested = re.search(r"Tested:\s+(\d+)", output)
    assert tested, output[-4000:]
    assert int(tested.group(1)) == operations, output[-4000:]
    assert run.returncode == 0, output[-20000:]
