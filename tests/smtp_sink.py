#!/usr/bin/env python3
"""A real SMTP server for the end-to-end tests: accepts every message and stores it as a file.

Usage: smtp_sink.py DIR — listens on 127.0.0.1 on a free port, prints "listening PORT" once
ready, and writes each message to DIR/NNNNNN.eml (written to a temporary name, then renamed,
so readers never see half a message). Needs aiosmtpd (Debian python3-aiosmtpd or pip aiosmtpd).
"""

import asyncio
import itertools
import os
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        number = next(self.counter)
        final = os.path.join(self.directory, f"{number:06d}.eml")
        temporary = final + ".tmp"
        with open(temporary, "wb") as out:
            for recipient in envelope.rcpt_tos:
                out.write(f"X-Envelope-To: {recipient}\r\n".encode())
            content = envelope.original_content or envelope.content
            out.write(content if isinstance(content, bytes) else content.encode())
        os.rename(temporary, final)
        return "250 OK"


async def main(directory):
    loop = asyncio.get_running_loop()
    handler = Sink(directory)
    server = await loop.create_server(lambda: SMTP(handler), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
