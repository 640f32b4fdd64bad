"""The fixed-response upstream: nginx answering an OpenAI-compatible `/chat/completions`.

nginx cannot cheaply read the JSON body, so the response kind is chosen by the path prefix, and the
gateways under test get one provider per prefix:

- `/plain/v1/chat/completions`: a fixed `chat.completion` JSON (non-stream);
- `/sse/v1/chat/completions`: a fixed `text/event-stream` body (role chunk, content chunks, finish
  chunk, usage chunk, `data: [DONE]`);
- `/slow/v1/...` and `/slowsse/v1/...`: the same two after 50 ms (`echo_sleep` from Debian's
  libnginx-mod-http-echo), so a gateway's cost shows up as lost concurrency rather than CPU;
- `/paced/v1/...`: a paced stream (issue 14's "streams sustained"): the role chunk at once, then
  `PACED_DELTAS` content deltas (`"<0>"`, `"<1>"`, ... so a client can check order) `PACED_GAP_S`
  apart (`echo_flush` + `echo_sleep`), then the finish chunk, the usage chunk and `data: [DONE]`;
- `/anthropic/v1/messages`: a fixed Anthropic `message` JSON, and
  `/bedrock/model/{modelId}/converse`: a fixed Bedrock Converse JSON (with `x-amzn-RequestId`), the
  translated upstreams of `bench/providers.py` (nginx checks neither key nor signature);
- `/nginx_status`: nginx's stub_status, read by `accepted()` (connections accepted so far), so a
  run can tell how many upstream connections a gateway opened (its client's pooling at work).

The config is generated into a temp dir and nginx runs as a non-daemon child of the benchmark.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import cpus

__all__ = ["ECHO_MODULE", "PACED_DELTAS", "PACED_GAP_S", "PATHS", "Upstream", "anthropic_message", "chat_completion",
           "converse_response", "sse_body"]

ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
# Scenario kind -> base URL path (what a gateway's provider `base_url` / LiteLLM's `api_base` ends with).
PATHS = {"plain": "/plain/v1", "sse": "/sse/v1", "slow": "/slow/v1", "slowsse": "/slowsse/v1",
         "paced": "/paced/v1"}
LATENCY_S = 0.05
PACED_DELTAS = 64
PACED_GAP_S = 0.02

_CREATED = 1_700_000_000
_USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
_WORDS = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]


def chat_completion() -> dict[str, object]:
    return {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": _CREATED,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_bench",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "".join(_WORDS), "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": _USAGE,
    }


def anthropic_message() -> dict[str, object]:
    """The Anthropic Messages answer carrying chat_completion()'s text and usage."""
    return {"id": "msg_bench0001", "type": "message", "role": "assistant", "model": "claude-bench",
            "content": [{"type": "text", "text": "".join(_WORDS)}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 9}}


def converse_response() -> dict[str, object]:
    """The Bedrock Converse answer carrying chat_completion()'s text and usage."""
    return {"output": {"message": {"role": "assistant", "content": [{"text": "".join(_WORDS)}]}},
            "stopReason": "end_turn", "usage": {"inputTokens": 12, "outputTokens": 9, "totalTokens": 21},
            "metrics": {"latencyMs": 1}}


def _chunk(choices: list[dict[str, object]], usage: dict[str, int] | None = None) -> str:
    chunk = {"id": "chatcmpl-bench0001", "object": "chat.completion.chunk", "created": _CREATED,
             "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_bench", "choices": choices,
             "usage": usage}
    return "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"


def sse_body() -> str:
    frames = [_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                       "finish_reason": None}])]
    frames += [_chunk([{"index": 0, "delta": {"content": w}, "logprobs": None, "finish_reason": None}])
               for w in _WORDS]
    frames.append(_chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    frames.append(_chunk([], _USAGE))
    frames.append("data: [DONE]\n\n")
    return "".join(frames)


def _paced_location() -> str:
    """nginx directives of the paced stream: each delta flushed on its own after a `PACED_GAP_S` sleep."""
    role = _chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                    "finish_reason": None}])
    lines = [f"echo -n {_quote(role)};", "echo_flush;"]
    for i in range(PACED_DELTAS):
        delta = _chunk([{"index": 0, "delta": {"content": f"<{i}>"}, "logprobs": None, "finish_reason": None}])
        lines += [f"echo_sleep {PACED_GAP_S};", f"echo -n {_quote(delta)};", "echo_flush;"]
    tail = (_chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
            + _chunk([], {"prompt_tokens": 12, "completion_tokens": PACED_DELTAS, "total_tokens": 12 + PACED_DELTAS})
            + "data: [DONE]\n\n")
    lines.append(f"echo -n {_quote(tail)};")
    return "\n            ".join(lines)


def _quote(text: str) -> str:
    """An nginx single-quoted string (no `$` in our bodies, so no variable interpolation)."""
    assert "$" not in text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def nginx_conf(port: int, workdir: Path, workers: int) -> str:
    plain = _quote(json.dumps(chat_completion(), separators=(",", ":")))
    sse = _quote(sse_body())
    sleep = f"echo_sleep {LATENCY_S};"
    return f"""
load_module {ECHO_MODULE};
daemon off;
master_process on;
worker_processes {workers};
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} backlog=4096 reuseport;
        location = /plain/v1/chat/completions {{
            default_type application/json;
            add_header x-request-id upstream-bench-id;
            return 200 {plain};
        }}
        location = /sse/v1/chat/completions {{
            default_type text/event-stream;
            add_header x-request-id upstream-bench-id;
            return 200 {sse};
        }}
        location = /slow/v1/chat/completions {{
            default_type application/json;
            add_header x-request-id upstream-bench-id;
            {sleep}
            echo -n {plain};
        }}
        location = /slowsse/v1/chat/completions {{
            default_type text/event-stream;
            add_header x-request-id upstream-bench-id;
            {sleep}
            echo -n {sse};
        }}
        location = /paced/v1/chat/completions {{
            default_type text/event-stream;
            add_header x-request-id upstream-bench-id;
            {_paced_location()}
        }}
        location = /anthropic/v1/messages {{
            default_type application/json;
            add_header request-id req_bench0001;
            return 200 {_quote(json.dumps(anthropic_message(), separators=(",", ":")))};
        }}
        location ~ ^/bedrock/model/[^/]+/converse$ {{
            default_type application/json;
            add_header x-amzn-RequestId bench-request-id;
            return 200 {_quote(json.dumps(converse_response(), separators=(",", ":")))};
        }}
        location = /nginx_status {{ stub_status; }}
        # An OTLP/HTTP sink for `run.py --tracing`: accepts the exported spans and discards them.
        location = /v1/traces {{ client_max_body_size 0; default_type application/x-protobuf; return 200 ''; }}
        location / {{ return 404 '{{"error":{{"message":"no such path","type":"invalid_request_error"}}}}'; }}
    }}
}}
"""


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nginx did not start listening")


class Upstream:
    """nginx serving the fixed responses on 127.0.0.1:`port` until `stop()`."""

    def __init__(self, workdir: Path, port: int, workers: int = 1) -> None:
        self.workdir = workdir
        self.port = port
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, kind: str) -> str:
        return self.url + PATHS[kind]

    def start(self) -> Upstream:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists() or not ECHO_MODULE.exists():
            raise SystemExit("bench: needs nginx and its echo module: apt-get install -y nginx libnginx-mod-http-echo")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(nginx_conf(self.port, self.workdir, self.workers))
        with open(self.workdir / "nginx.out", "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([nginx, "-p", str(self.workdir), "-c", str(conf),
                                          "-e", str(self.workdir / "error.log")], stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=cpus.for_load())
        _wait_port(self.port, self.proc)
        return self

    def accepted(self) -> int:
        """Connections nginx accepted so far (stub_status): how many a gateway opened to its upstream."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"GET /nginx_status HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        body = raw.partition(b"\r\n\r\n")[2].decode()
        # "Active connections: N \nserver accepts handled requests\n A H R \n..."
        return int(body.splitlines()[2].split()[0])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown of master and workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
