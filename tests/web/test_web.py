"""Browser test of `imgsim serve`: headless Chromium, driven through chromium-driver
(WebDriver, spoken here with the standard library), uploads pictures through the
page, follows "more like this", checks the error messages, then a bounded load
of concurrent searches hits the API.

Environment:
  IMGSIM_CLI          the built `imgsim` binary
  IMGSIM_TEST_DSN     a database with `CREATE EXTENSION imgsim` done
  IMGSIM_TEST_PHOTOS  directory of photos with chelsea.png (derived_* ignored)
  IMGSIM_SERVE_PORT, IMGSIM_CHROMEDRIVER_PORT   ports to use (default: free ones)
  IMGSIM_WEB_SCREENSHOT  if set, where to write a screenshot of the results page

Needs Pillow (to make the query pictures), psql, /usr/bin/chromium and
/usr/bin/chromedriver. Last line: "N passed, N failed"; exit status 1 on any failure.
"""
import base64
import concurrent.futures
import io
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

CLI = os.environ["IMGSIM_CLI"]
DSN = os.environ["IMGSIM_TEST_DSN"]
PHOTOS = Path(os.environ["IMGSIM_TEST_PHOTOS"])
SCREENSHOT = os.environ.get("IMGSIM_WEB_SCREENSHOT")
TABLE = f"web_test_{os.getpid()}"
K = 8
UPLOAD_LIMIT_MB = 1
CONCURRENT_SEARCHES = 200
CONCURRENT_CONNECTIONS = 4

passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok: {name}")
    else:
        failed += 1
        print(f"FAIL: {name} {detail}")
    sys.stdout.flush()


def sql(query):
    out = subprocess.run(["psql", DSN, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", query],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(stream, prefix, timeout):
    """The first line of `stream` starting with `prefix`, read in a thread (a pipe has no timeout)."""
    found = []
    def read():
        for line in stream:
            if line.startswith(prefix):
                found.append(line)
                return
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0] if found else None


class WebDriver:
    """The few W3C WebDriver commands this test needs."""
    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"WebDriver {method} {path}: {e.read().decode()[:500]}") from None

    def start(self, profile):
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1100,900"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium", "args": args}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def s(self, path):
        return f"/session/{self.session}{path}"

    def get(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def js(self, script, *args):
        return self.call("POST", self.s("/execute/sync"), {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        return self.call("POST", self.s("/execute/async"), {"script": script, "args": list(args)})

    def element(self, css):
        return self.call("POST", self.s("/element"), {"using": "css selector", "value": css})[self.ELEMENT]

    def send_keys(self, element, text):
        self.call("POST", self.s(f"/element/{element}/value"), {"text": text})

    def click(self, element):
        self.call("POST", self.s(f"/element/{element}/click"), {})

    def screenshot(self):
        return base64.b64decode(self.call("GET", self.s("/screenshot")))

    def quit(self):
        if self.session:
            self.call("DELETE", self.s(""))

    def wait_state(self, states, timeout=60):
        """Waits until the page's data-state is one of `states`; returns it (or the last seen)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.js("return document.body.dataset.state")
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def results(self):
        return self.js("""return Array.from(document.querySelectorAll('#results figure')).map(f => {
            const img = f.querySelector('img');
            return {id: Number(f.dataset.id), path: f.dataset.path, width: img.naturalWidth,
                    height: img.naturalHeight, caption: f.querySelector('figcaption').textContent};
        })""")


def upload(driver, path):
    driver.send_keys(driver.element("#file"), str(path))
    return driver.wait_state({"done", "error"})


def main():
    work = Path(tempfile.mkdtemp(prefix="imgsim_web_"))
    photos = sorted(p for p in PHOTOS.iterdir()
                    if p.suffix.lower() in {".png", ".jpg", ".jpeg"} and not p.name.startswith("derived_"))
    if not (PHOTOS / "chelsea.png").exists() or len(photos) < K + 2:
        print(f"need chelsea.png and at least {K + 2} photos in {PHOTOS}")
        return 1
    collection = work / "photos"
    collection.mkdir()
    for p in photos:
        (collection / p.name).symlink_to(p)

    # Queries that are not in the table: a crop re-encoded as a phone would, a
    # file that is no image, and one over the upload limit.
    query = work / "chelsea_phone.jpg"
    chelsea = Image.open(PHOTOS / "chelsea.png").convert("RGB")
    w, h = chelsea.size
    chelsea.crop((w // 10, h // 12, w - w // 8, h - h // 10)).resize((640, 480)).save(query, quality=70)
    not_an_image = work / "holiday.jpg"
    not_an_image.write_bytes(b"this is not a JPEG at all\n" * 100)
    too_large = work / "too_large.png"
    too_large.write_bytes(random.Random(1).randbytes(UPLOAD_LIMIT_MB * 2**20 + 1))

    load = subprocess.run([CLI, "load", "--db", DSN, "--table", TABLE, "--jobs", "2", str(collection)],
                          capture_output=True, text=True)
    check("load exits 0", load.returncode == 0, load.stderr[-500:])
    stored = {path: int(i) for i, path in sql(f"SELECT id, path FROM {TABLE}")}
    chelsea_path = str(collection / "chelsea.png")
    check("every photo loaded", len(stored) == len(photos), f"{len(stored)} of {len(photos)}")

    serve_port = int(os.environ.get("IMGSIM_SERVE_PORT") or free_port())
    driver_port = int(os.environ.get("IMGSIM_CHROMEDRIVER_PORT") or free_port())
    serve = subprocess.Popen([CLI, "serve", "--db", DSN, "--table", TABLE, "--listen", f"127.0.0.1:{serve_port}",
                              "--connections", str(CONCURRENT_CONNECTIONS), "--max-upload-mb", str(UPLOAD_LIMIT_MB)],
                             stdout=subprocess.PIPE, text=True)
    chromedriver = subprocess.Popen(["chromedriver", f"--port={driver_port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = WebDriver(driver_port)
    try:
        line = wait_for_line(serve.stdout, "imgsim serve: listening on", 30)
        check("serve starts and names its URL", line is not None and f"127.0.0.1:{serve_port}" in line, str(line))
        url = f"http://127.0.0.1:{serve_port}/"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{driver_port}/status", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        driver.start(work / "chromium-profile")
        driver.get(url)
        check("page loads and lists the table", driver.wait_state({"idle"}) == "idle"
              and driver.js("return document.getElementById('table').value") == TABLE)
        driver.js("document.getElementById('k').value = arguments[0]", K)

        # --- upload through the file chooser ---
        state = upload(driver, query)
        results = driver.results()
        check("upload: the page shows k matches", state == "done" and len(results) == K, f"{state} {len(results)}")
        check("upload: the first match is the original photo",
              bool(results) and results[0]["path"] == chelsea_path and results[0]["id"] == stored[chelsea_path],
              str(results[:1]))
        loaded = driver.js("return document.body.dataset.thumbnailsLoaded")
        check("upload: every thumbnail loaded", loaded == str(K), f"{loaded} of {K}")
        check("upload: thumbnails are small (at most 256 px a side), not the full image",
              all(0 < r["width"] <= 256 and 0 < r["height"] <= 256 for r in results),
              str([(r["width"], r["height"]) for r in results]))
        check("upload: the query picture is shown",
              driver.js("return document.querySelector('#query img').naturalWidth") > 0)
        distances = [float(r["caption"].split("distance ")[1].split()[0]) for r in results]
        check("upload: distances ascend", distances == sorted(distances), str(distances))
        if SCREENSHOT:
            picture = Image.open(io.BytesIO(driver.screenshot())).convert("RGB")
            picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(SCREENSHOT, optimize=True)
            print(f"wrote {SCREENSHOT}")

        # --- "more like this": click the second match ---
        clicked = results[1]
        driver.click(driver.element("#results figure:nth-child(2)"))
        state = driver.wait_state({"done", "error"})
        similar = driver.results()
        # The exact answer, computed here from the stored vectors.
        vectors = {int(i): json.loads(text) for i, text in sql(f"SELECT id, emb::text FROM {TABLE}")}
        expected = sorted((math.dist(vectors[i], vectors[clicked["id"]]), i) for i in vectors if i != clicked["id"])[:K]
        check("more like this: results are the exact nearest rows to the clicked one, in order",
              state == "done" and [r["id"] for r in similar] == [i for _, i in expected],
              f"{[r['id'] for r in similar]} vs {[i for _, i in expected]}")
        page_distances = [float(r["caption"].split("distance ")[1].split()[0]) for r in similar]
        check("more like this: distances match an exact computation (4 decimals)",
              all(abs(a - d) < 1e-3 for a, (d, _) in zip(page_distances, expected)),
              f"{page_distances} vs {[round(d, 4) for d, _ in expected]}")
        check("more like this: the query shows the clicked row",
              f"id {clicked['id']}" in driver.js("return document.querySelector('#query figcaption').textContent"))
        loaded = driver.js("return document.body.dataset.thumbnailsLoaded")
        check("more like this: every thumbnail loaded", loaded == str(K), f"{loaded} of {K}")

        # --- errors are explained on the page, and the app goes on serving ---
        state = upload(driver, not_an_image)
        message = driver.js("return document.getElementById('message').textContent")
        check("a file that is not an image: message with SQLSTATE 22P03",
              state == "error" and "not an image" in message and "SQLSTATE 22P03" in message, f"{state}: {message}")
        check("a failed search clears the old results", driver.results() == [])
        state = upload(driver, too_large)
        message = driver.js("return document.getElementById('message').textContent")
        check("a picture over the upload limit: message naming the limit",
              state == "error" and f"upload limit of {UPLOAD_LIMIT_MB} MB" in message, f"{state}: {message}")
        request = urllib.request.Request(f"{url}api/search?table={TABLE}", data=too_large.read_bytes(), method="POST")
        try:
            urllib.request.urlopen(request, timeout=30)
            status = 200
        except urllib.error.HTTPError as e:
            status = e.code
        check("the upload limit answers HTTP 413", status == 413, str(status))

        # --- drag and drop: a File dropped on the drop zone (the query bytes, made in the page) ---
        query_b64 = base64.b64encode(query.read_bytes()).decode()
        driver.js("""const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], 'dropped.jpg', {type: 'image/jpeg'}));
            document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
        """, query_b64)
        state = driver.wait_state({"done", "error"})
        results = driver.results()
        check("after errors, a dropped picture is searched and finds the original first",
              state == "done" and bool(results) and results[0]["path"] == chelsea_path, f"{state} {results[:1]}")

        # --- a table name that is not a table gets a clear refusal, not SQL ---
        for bad in ["no_such_table", 'x"; DROP TABLE web; --']:
            try:
                urllib.request.urlopen(f"{url}api/similar?" + urllib.parse.urlencode({"table": bad, "id": 1}), timeout=30)
                status, body = 200, {}
            except urllib.error.HTTPError as e:
                status, body = e.code, json.load(e)
            check(f"unknown table {bad!r} is refused with 404 and a message",
                  status == 404 and "No table" in body.get("error", ""), f"{status} {body}")

        # --- a bounded load: concurrent searches over the pool's connections ---
        query_bytes = query.read_bytes()
        def one_search(_):
            request = urllib.request.Request(f"{url}api/search?table={TABLE}&k=3", data=query_bytes, method="POST",
                                             headers={"Content-Type": "image/jpeg"})
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    return json.load(response)["matches"][0]["path"] == chelsea_path
            except (OSError, KeyError, IndexError, ValueError):
                return False
        with concurrent.futures.ThreadPoolExecutor(CONCURRENT_CONNECTIONS) as pool:
            outcomes = list(pool.map(one_search, range(CONCURRENT_SEARCHES)))
        check(f"{CONCURRENT_SEARCHES} concurrent searches over {CONCURRENT_CONNECTIONS} connections all find the original",
              all(outcomes), f"{outcomes.count(False)} failed")
    finally:
        try:
            driver.quit()
        except (OSError, RuntimeError) as e:
            print(f"cannot end the browser session: {e}")
        chromedriver.terminate()
        chromedriver.wait(30)
        serve.send_signal(signal.SIGTERM)
        try:
            status = serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
            status = "killed after 30 s"
        check("serve stops cleanly on SIGTERM", status == 0, str(status))
        sql(f"DROP TABLE IF EXISTS {TABLE}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
