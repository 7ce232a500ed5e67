"""The API throttle holds under concurrency: counted atomically in Redis or with one SQL UPSERT.

Ten client threads share one key against a real (threaded) live server; the counter store is
parametrized: Redis (INCR + EXPIRE) and the database (what the embedded default uses, where the
cache is a file cache shared by several gunicorn workers).
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from projects import keys

LIMIT = 20
SLACK = 0  # the counters are atomic: exactly LIMIT requests pass in one window

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["redis", "database"])
def store(request, settings):
    if request.param == "redis" and not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        pytest.skip("needs Redis: REDIS_URL is not set")
    settings.PICTOR_THROTTLE_STORE = request.param
    return request.param


def test_it_lets_no_more_than_the_limit_through_for_ten_parallel_clients(team, live_server, settings, store):
    settings.PICTOR_API_RATE = f"{LIMIT}/day"  # one window for the whole test
    key = keys.api_key_create(project=team.project, name="k", scope="invoke")[1]
    url = f"{live_server.url}/api/v1/projects/{team.project.pk}"

    def client(_):
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {key}"
            return [s.get(url, timeout=30) for _ in range(6)]

    with ThreadPoolExecutor(10) as pool:
        answers = [r for batch in pool.map(client, range(10)) for r in batch]
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429}, codes
    assert LIMIT <= codes.count(200) <= LIMIT + SLACK, codes.count(200)
    throttled = next(r for r in answers if r.status_code == 429)
    assert throttled.json()["error"]["code"] == "throttled" and int(throttled.headers["Retry-After"]) > 0


def test_it_throttles_failed_authentication_per_address(team, live_server, settings, store):
    settings.PICTOR_AUTH_FAIL_RATE = "3/day"
    url = f"{live_server.url}/api/v1/projects/{team.project.pk}"
    codes = []
    for i in range(6):
        r = requests.get(url, headers={"Authorization": f"Bearer nope.guess{i}"}, timeout=30)
        codes.append(r.status_code)
    assert codes == [401, 401, 401, 429, 429, 429]
    body = r.json()
    assert body["error"]["code"] == "throttled" and int(r.headers["Retry-After"]) > 0
    # A real key from the same address still works.
    key = keys.api_key_create(project=team.project, name="k", scope="invoke")[1]
    assert requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code == 200
