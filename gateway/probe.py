"""``python -m gateway.probe [readiness|liveness]``: exit 0 if this process's
/readyz (default) or /healthz answers 200, else 1. For runtimes without HTTP
probes (a compose healthcheck); Kubernetes probes HTTP itself. The port is
the process's own HTTP_PORT."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

PATHS = {"readiness": "/readyz", "liveness": "/healthz"}


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "readiness"
    if kind not in PATHS:
        raise SystemExit(f"usage: python -m gateway.probe [{'|'.join(PATHS)}]")
    url = f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8080')}{PATHS[kind]}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    print(f"{url}: {status or 'no answer'}")
    raise SystemExit(0 if status == 200 else 1)


if __name__ == "__main__":
    main()
