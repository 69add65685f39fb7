#!/usr/bin/env python3
"""aiocoap OSCORE client for the interop tests and the benchmark.

usage: aiocoap_client.py --context DIR [--put FILE] [--out FILE] coap://127.0.0.1:PORT/PATH

GET writes the payload to --out (or stdout); PUT sends FILE. Prints "elapsed SECONDS" for the
request on stderr. Exit 1 on any error response or exception.
"""
import argparse
import asyncio
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiocoap
from aiocoap import oscore


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--context", type=Path, required=True)
    p.add_argument("--put", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("uri")
    o = p.parse_args()
    u = urlsplit(o.uri)
    if u.port is None:
        # Without the port in the pattern aiocoap silently sends unprotected requests.
        print("URI must include the port", file=sys.stderr)
        return 2
    ctx = await aiocoap.Context.create_client_context()
    try:
        ctx.client_credentials["coap://%s/*" % u.netloc] = oscore.FilesystemSecurityContext(str(o.context))
        if o.put:
            msg = aiocoap.Message(code=aiocoap.PUT, uri=o.uri, payload=o.put.read_bytes())
        else:
            msg = aiocoap.Message(code=aiocoap.GET, uri=o.uri)
        t0 = time.perf_counter()
        resp = await ctx.request(msg).response
        elapsed = time.perf_counter() - t0
        print("elapsed %.6f" % elapsed, file=sys.stderr)
        if not resp.code.is_successful():
            print("error response %s %r" % (resp.code, resp.payload[:100]), file=sys.stderr)
            return 1
        if not o.put:
            if o.out:
                o.out.write_bytes(resp.payload)
            else:
                sys.stdout.buffer.write(resp.payload)
        return 0
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
