"""The live dashboard at / (issue 5): headless Chromium (Debian's package)
renders the page served by `eventpipe run`, before and after events are
ingested, and the rendered DOM shows the counts; a screenshot is saved as an
artifact ($EP_ARTIFACTS_DIR, else artifacts/ in the ctest build directory)."""

import os
import re
import shutil
import subprocess
import tempfile

from eptest import Eventpipe, get_json, main, request, seed_event, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def artifacts_dir():
    d = os.environ.get("EP_ARTIFACTS_DIR") or os.path.join(os.getcwd(), "artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def chromium(url, *extra):
    """Runs headless Chromium on url with a fresh profile; returns stdout."""
    profile = tempfile.mkdtemp(prefix="ep-chromium-")
    try:
        p = subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=" + profile,
                                                 "--virtual-time-budget=3000"] +
                           list(extra) + [url], capture_output=True, timeout=90)
        assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
        return p.stdout.decode(errors="replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def shown(dom, element_id):
    m = re.search(r'id="%s"[^>]*>([^<]*)<' % element_id, dom)
    assert m, "no #%s in the rendered page" % element_id
    return m.group(1).strip()


def test_page_is_self_contained():
    with Eventpipe("run") as ep:
        r = request(ep.api, "GET", "/")
        assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
        page = r.body.decode()
        # Works offline: nothing is loaded from another origin.
        assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page), "external resource"
        assert "/api/v1/status" in page and "/api/v1/dashboard" in page
        d = get_json(ep.api, "/api/v1/dashboard")
        assert d["metrics_enabled"] is True
        assert ep.stop() == 0


def test_chromium_shows_ingested_events():
    n = 17
    with Eventpipe("run") as ep:
        url = "http://127.0.0.1:%d/" % ep.api
        dom = chromium(url, "--dump-dom")
        assert shown(dom, "ingested") == "0", shown(dom, "ingested")
        for i in range(n):
            assert request(ep.api, "POST", "/api/v1/ingest", seed_event(i)).status == 202
        for t in ("user", "order", "payment"):
            assert request(ep.api, "POST", "/api/v1/events/" + t, {"data": t}).status == 202
        total = n + 3
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == total,
                 timeout=30, what="%d processed" % total)
        dom = chromium(url, "--dump-dom")
        assert shown(dom, "ingested") == str(total), shown(dom, "ingested")
        assert shown(dom, "processed") == str(total), shown(dom, "processed")
        assert shown(dom, "queue_size") == "0"
        assert shown(dom, "queue_cap") == "1,000"
        assert re.search(r"healthy</td>", dom), "no role health rendered"
        assert shown(dom, "in_p50") not in ("", "-"), "no ingest latency percentile"
        shot = os.path.join(artifacts_dir(), "dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        chromium(url, "--screenshot=" + shot, "--window-size=1280,900")
        assert os.path.getsize(shot) > 10000, shot
        with open(shot, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        print("screenshot: %s" % shot, flush=True)
        assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
