"""The image builds from a clean clone (issue 17): `git clone` of this checkout's
HEAD, then `docker build --network host` on the private engine's debian:12-slim;
the final image is at most 120 MB. Tags it EP_TEST_IMAGE (eventpipe:test) for the
other docker tests. Prints the build time and the image size."""

import os
import shutil
import subprocess
import tempfile

from dockertest import IMAGE, ROOT, docker, figure, inspect, main, now

MAX_IMAGE_BYTES = 120 * 1000 * 1000  # docker counts MB as 10^6 bytes


def test_image_builds_from_a_clean_clone():
    d = tempfile.mkdtemp(prefix="ep-clone-")
    try:
        src = os.path.join(d, "eventpipe")
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, src], check=True)
        t0 = now()
        p = docker("build", "--network", "host", "-t", IMAGE, src, timeout=3600)
        figure("image build seconds", "%.0f" % (now() - t0))
        assert "runtime packages:" in p.stdout + p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)
    size = int(inspect(IMAGE, "{{.Size}}"))
    figure("image size MB", "%.1f" % (size / 1e6))
    assert size <= MAX_IMAGE_BYTES, "image is %d bytes, over 120 MB" % size
    # Multi-stage: no compiler or -dev headers in the final image.
    p = docker("run", "--rm", "--network", "host", "--entrypoint", "sh", IMAGE, "-c",
               "command -v gcc cc cmake; ls /usr/include 2>/dev/null | head -1; true")
    assert p.stdout.strip() == "", p.stdout


if __name__ == "__main__":
    main(globals())
