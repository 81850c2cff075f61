#!/usr/bin/env python3
"""A minimal CQL client over the native protocol (v4), so the server scripts need no driver:

    cql.py HOST PORT                 prints the server's version (a readiness check)
    cql.py HOST PORT "STATEMENT"     runs a statement; prints the rows, tab-separated
    cql.py HOST PORT -               runs the statement read from standard input (one that holds
                                     a password, which the command line would show)

Only text columns are printed as text (others as hex). Exit code 0 when the server answered,
1 otherwise (the reason goes to stderr).

A secured server is reached through the environment (never the command line, which `ps`
shows): CQL_CA (a PEM file: talk TLS, trusting it), CQL_CERT and CQL_KEY (a client certificate),
CQL_USER and CQL_PASSWORD_FILE (PasswordAuthenticator).
"""

import os
import socket
import ssl
import struct
import sys

VERSION = 0x04
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x03, 0x07, 0x08
OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x0F, 0x10
CONSISTENCY_ONE = 0x0001


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def long_string(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def frame(stream, opcode, body):
    return struct.pack(">BBhBi", VERSION, 0, stream, opcode, len(body)) + body


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        data += chunk
    return data


def read_frame(sock):
    header = read_exact(sock, 9)
    _version, _flags, _stream, opcode, length = struct.unpack(">BBhBi", header)
    return opcode, read_exact(sock, length)


def error_message(body):
    code = struct.unpack(">i", body[:4])[0]
    (n,) = struct.unpack(">H", body[4:6])
    return "error 0x%04x: %s" % (code, body[6 : 6 + n].decode(errors="replace"))


def rows_of(body):
    """The rows of a Rows result, each a list of str (text) or hex (other types) or None."""
    pos = 0

    def take(fmt):
        nonlocal pos
        size = struct.calcsize(fmt)
        value = struct.unpack(fmt, body[pos : pos + size])
        pos += size
        return value[0]

    def take_string():
        nonlocal pos
        n = take(">H")
        value = body[pos : pos + n].decode()
        pos += n
        return value

    def skip_type():
        kind = take(">H")
        if kind == 0x0000:  # custom: a class name
            take_string()
        elif kind in (0x0020, 0x0022):  # list, set
            skip_type()
        elif kind == 0x0021:  # map
            skip_type()
            skip_type()
        elif kind == 0x0030:  # udt
            take_string()
            take_string()
            for _ in range(take(">H")):
                take_string()
                skip_type()
        elif kind == 0x0031:  # tuple
            for _ in range(take(">H")):
                skip_type()
        return kind

    kind = take(">i")
    if kind != 2:
        return []
    flags = take(">i")
    columns = take(">i")
    if flags & 0x0002:  # has_more_pages: paging state follows
        n = take(">i")
        pos += max(n, 0)
    if flags & 0x0004:  # no_metadata
        return []
    if flags & 0x0001:  # global_tables_spec
        take_string()
        take_string()
    types = []
    for _ in range(columns):
        if not flags & 0x0001:
            take_string()
            take_string()
        take_string()
        types.append(skip_type())
    rows = []
    for _ in range(take(">i")):
        row = []
        for column_type in types:
            n = take(">i")
            if n < 0:
                row.append(None)
                continue
            cell = body[pos : pos + n]
            pos += n
            row.append(cell.decode() if column_type in (0x0001, 0x000A, 0x000D) else cell.hex())
        rows.append(row)
    return rows


def connect(host, port, timeout):
    sock = socket.create_connection((host, port), timeout=timeout)
    ca = os.environ.get("CQL_CA")
    if not ca:
        return sock
    context = ssl.create_default_context(cafile=ca)
    if os.environ.get("CQL_CERT"):
        context.load_cert_chain(os.environ["CQL_CERT"], os.environ.get("CQL_KEY"))
    return context.wrap_socket(sock, server_hostname=host)


def authenticate(sock):
    user = os.environ.get("CQL_USER")
    if not user:
        print("server asks for authentication; it is up", file=sys.stderr)
        return False
    with open(os.environ["CQL_PASSWORD_FILE"]) as f:
        password = f.read().strip()
    token = b"\0" + user.encode() + b"\0" + password.encode()
    sock.sendall(frame(1, OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token))
    opcode, body = read_frame(sock)
    if opcode != OP_AUTH_SUCCESS:
        raise RuntimeError(error_message(body) if opcode == OP_ERROR else "unexpected opcode %d" % opcode)
    return True


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9042
    statement = sys.argv[3] if len(sys.argv) > 3 else None
    if statement == "-":
        statement = sys.stdin.read()
    try:
        with connect(host, port, 5 if statement is None else 120) as sock:
            sock.sendall(frame(1, OP_STARTUP, struct.pack(">H", 1) + string("CQL_VERSION") + string("3.0.0")))
            opcode, body = read_frame(sock)
            if opcode == OP_AUTHENTICATE and not authenticate(sock):
                print("unknown (authentication required)")
                return 0
            if opcode not in (OP_READY, OP_AUTHENTICATE):
                raise RuntimeError(error_message(body) if opcode == OP_ERROR else "unexpected opcode %d" % opcode)
            query = long_string(statement or "SELECT release_version FROM system.local")
            sock.sendall(frame(2, OP_QUERY, query + struct.pack(">HB", CONSISTENCY_ONE, 0)))
            opcode, body = read_frame(sock)
            if opcode != OP_RESULT:
                raise RuntimeError(error_message(body) if opcode == OP_ERROR else "unexpected opcode %d" % opcode)
            rows = rows_of(body)
            if statement is None:
                print(rows[0][0] if rows and rows[0] and rows[0][0] else "unknown")
            else:
                for row in rows:
                    print("\t".join("" if cell is None else cell for cell in row))
            return 0
    except Exception as e:  # noqa: BLE001 - any failure means "not serving yet"
        print("cql %s:%d: %s" % (host, port, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
