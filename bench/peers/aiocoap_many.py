#!/usr/bin/env python3
"""N OSCORE block-wise GETs of one resource from an aiocoap server, at most C at a time.

usage: aiocoap_many.py --context DIR --count N --concurrency C coap://127.0.0.1:PORT/PATH

The reference for bench/rollout.sh: "the same release fetched by the same number of clients
from aiocoap". All requests share one client security context (aiocoap keeps one sender
sequence per context); each checks the SHA-256 of what it got against --sha256. Prints
"elapsed SECONDS" and "ok N" on stdout.
"""
import argparse
import asyncio
import hashlib
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiocoap
from aiocoap import oscore


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--context", type=Path, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--sha256", required=True)
    p.add_argument("uri")
    o = p.parse_args()
    u = urlsplit(o.uri)
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials["coap://%s/*" % u.netloc] = oscore.FilesystemSecurityContext(str(o.context))
    sem = asyncio.Semaphore(o.concurrency)
    ok = 0

    async def one():
        nonlocal ok
        async with sem:
            resp = await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=o.uri)).response
            if resp.code.is_successful() and hashlib.sha256(resp.payload).hexdigest() == o.sha256:
                ok += 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(o.count)))
    finally:
        elapsed = time.perf_counter() - t0
        await ctx.shutdown()
    print("elapsed %.3f" % elapsed)
    print("ok %d" % ok)
    return 0 if ok == o.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
