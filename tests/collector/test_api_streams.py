"""Streaming reads of the API source (collector/api_streams.py): the line splitting and decoding
on recorded payloads, the mode rule, and the real collector loop on the real daemon with
``--api-mode stream`` — a sample per container every interval, a container that stops (its
samples and its thread end), one started later (it gets samples) — and on Podman's service,
killed and started again under running containers (the streams come back)."""

from __future__ import annotations

import functools
import itertools
import json
import statistics
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
from support.podman import podman_available, running_podman
from support.waiting import wait_for

from statspout import wire
from statspout.bus import PublishCounts
from statspout.collector import main as collector_main
from statspout.collector.api_source import ApiSource, choose_mode
from statspout.collector.api_streams import decode_payload, is_not_running, split_lines
from statspout.collector.figures import reading_from_api
from statspout.collector.loop import Collector

PAYLOADS = Path(__file__).parent / "payloads"
MAX_GAP_NS = 1_500_000_000
MakeContainer = Callable[..., docker.models.containers.Container]


def recorded_stream() -> bytes:
    """Two recorded stats objects as the daemon streams them: one JSON object a line."""
    one = json.loads((PAYLOADS / "cgroup_v1_api_1.41.json").read_text())
    return b"".join(json.dumps(payload).encode() + b"\n"
                    for payload in (one, {**one, "read": "2026-11-28T22:08:07.439977856Z"}))


def test_lines_are_split_wherever_the_chunks_break() -> None:
    stream = recorded_stream()
    whole = list(split_lines([stream]))
    assert len(whole) == 2
    for size in (1, 7, 512, 1600):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        assert list(split_lines(chunks)) == whole
    payloads = [decode_payload(line) for line in whole]
    assert all(payload is not None and reading_from_api(payload) for payload in payloads)


def test_an_endless_line_is_refused_not_buffered() -> None:
    with pytest.raises(ValueError, match="more than 100 bytes"):
        list(split_lines(itertools.repeat(b"x" * 60), max_bytes=100))


def test_what_is_not_a_json_object_is_malformed_and_a_zero_read_means_stopped() -> None:
    assert decode_payload(b"{nope") is None
    assert decode_payload(b"[1, 2]") is None
    assert is_not_running({"read": "0001-01-01T00:00:00Z"})
    assert not is_not_running({"read": "2026-11-28T22:08:07.439977856Z"})


def test_auto_streams_on_docker_at_short_intervals_only() -> None:
    assert choose_mode("auto", "docker", 1.0) == "stream"
    assert choose_mode("auto", "docker", 10.0) == "poll"
    assert choose_mode("auto", "podman", 1.0) == "poll"  # Podman pushes every 5 s
    assert choose_mode("stream", "podman", 10.0) == "stream"
    assert choose_mode("poll", "docker", 1.0) == "poll"


@pytest.mark.parametrize("argv", [["--api-mode", "bogus"], ["--api-streams-max", "0"]])
def test_bad_api_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        collector_main.build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert argv[0] in capsys.readouterr().err


# The real loop on the real daemon


@dataclass
class SampleLog:
    """Stand-in for bus.CollectorPublisher: keeps each container's stats messages."""

    counts: PublishCounts = field(default_factory=PublishCounts)
    samples: dict[str, list[wire.ContainerStats]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, payload: bytes) -> bool:
        message = wire.decode(payload)
        if isinstance(message, wire.ContainerStats):
            with self.lock:
                self.samples.setdefault(message.id, []).append(message)
        self.counts.sent += 1
        return True

    def of(self, container_id: str) -> list[wire.ContainerStats]:
        with self.lock:
            return list(self.samples.get(container_id, []))


@dataclass
class StreamingCollector:
    collector: Collector
    source: ApiSource
    published: SampleLog


def stream_threads(container_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"stats-{container_id[:12]}"]


def sample_gaps_ns(samples: list[wire.ContainerStats]) -> list[int]:
    """The daemon-time gaps between consecutive samples, each reading published once."""
    times = [sample.timestamp for sample in samples]
    assert times == sorted(set(times)), "a reading published twice, or out of order"
    return [b - a for a, b in itertools.pairwise(times)]


@contextmanager
def streaming_collector(client_factory: Callable[[], docker.DockerClient]
                        ) -> Iterator[StreamingCollector]:
    """The collector loop, in this process, reading through streams every second."""
    client = client_factory()
    source = ApiSource(client, mode="stream", interval_s=1.0)
    published = SampleLog()
    collector = Collector(client_factory=client_factory, source=source, publisher=published,
                          host="test", interval=1.0, max_concurrency=64, states="none")
    stop = threading.Event()
    loop = threading.Thread(target=collector.run, args=(stop,), name="collector-loop")
    loop.start()
    try:
        yield StreamingCollector(collector, source, published)
    finally:
        stop.set()
        loop.join(10)
        source.close()
        client.close()


@pytest.fixture
def streaming(docker_client: docker.DockerClient) -> Iterator[StreamingCollector]:
    with streaming_collector(functools.partial(docker.from_env, max_pool_size=256)) as running:
        yield running


@pytest.mark.docker
def test_streams_sample_every_container_every_interval(
    streaming: StreamingCollector, make_container: MakeContainer,
) -> None:
    ids = [make_container().id for _ in range(20)]
    published = streaming.published
    wait_for(lambda: all(len(published.of(cid)) >= 2 for cid in ids), 30,
             "two samples of each of the 20 containers")
    first = {cid: len(published.of(cid)) for cid in ids}
    wait_for(lambda: all(len(published.of(cid)) >= first[cid] + 6 for cid in ids), 30,
             "six more samples of each")
    gaps = {cid: sample_gaps_ns(published.of(cid)[first[cid] - 1:]) for cid in ids}
    worst = max(max(each) for each in gaps.values())
    streams = streaming.source.stream_counts()
    print(f"20 containers through streams: worst gap between a container's samples "
          f"{worst / 1e9:.2f} s; {streaming.source.counts}; {streams}")
    # Every reading the daemon pushed was published, once (distinct, in order: checked by
    # sample_gaps_ns): the collector adds no gap of its own. The daemon's own pushes come a
    # second plus its round over the streamed containers apart; on a loaded host a round now
    # and then takes longer (Docker 20.10 was measured pushing 2.2 s apart at 20 containers
    # here), so the worst gap is the benchmark's figure, and a sample every interval is
    # asserted as the rule: each container's median gap.
    assert streams is not None and streams.superseded == 0
    assert streaming.source.counts.stream_fallbacks <= len(ids)  # at most a first read each
    medians = {cid[:12]: statistics.median(each) / 1e9 for cid, each in gaps.items()}
    assert max(medians.values()) <= MAX_GAP_NS / 1e9, medians
    assert streaming.collector.counts.failed_samples == 0
    sample = published.of(ids[0])[-1]
    assert sample.cpu_percent is not None and sample.mem_cgroup_usage > 0
    assert streaming.source.counts.one_shot_reads == 0


@pytest.mark.docker
def test_a_stopped_container_ends_its_stream_and_a_later_one_gets_samples(
    streaming: StreamingCollector, make_container: MakeContainer,
) -> None:
    staying, stopping = make_container(), make_container()
    published = streaming.published
    wait_for(lambda: len(published.of(stopping.id)) >= 2 and stream_threads(stopping.id), 20,
             "samples of the container about to stop, through its stream")

    staying_before = len(published.of(staying.id))
    stopping.stop(timeout=0)
    wait_for(lambda: not stream_threads(stopping.id), 10, "its stream thread to end")
    settled = len(published.of(stopping.id))
    later = make_container()
    wait_for(lambda: len(published.of(later.id)) >= 3, 20,
             "samples of a container started after the collector")
    assert stream_threads(later.id), "the later container is not read through a stream"
    assert len(published.of(stopping.id)) == settled, "samples after the container stopped"
    wait_for(lambda: len(published.of(staying.id)) >= staying_before + 3, 20,
             "the container still running to go on being sampled")
    assert sample_gaps_ns(published.of(later.id))  # distinct readings, in order
    assert streaming.collector.counts.failed_samples == 0


@pytest.mark.skipif(not podman_available(), reason="podman is not installed")
def test_streams_come_back_after_the_engine_restarts(tmp_path_factory: pytest.TempPathFactory,
                                                     run_id: str) -> None:
    """Podman's API service can be killed and started again while its containers run on (a
    daemon restart, without touching the Docker engine other tests use). Podman 4.3 pushes a
    stream's payload every 5 s, so the samples come every 5 s here."""
    with running_podman(tmp_path_factory.mktemp("podman")) as podman:
        def run() -> str:
            return podman.podman("run", "-d", "--network", "none", "--label",
                                 f"statspout.test={run_id}", "statspout-test/busybox:1",
                                 "sleep", "600")

        before = run()
        factory = functools.partial(docker.DockerClient, base_url=f"unix://{podman.socket}",
                                    max_pool_size=64, timeout=30)
        with streaming_collector(factory) as streaming:
            published, source = streaming.published, streaming.source
            wait_for(lambda: len(published.of(before)) >= 2, 20,
                     "two samples through the stream from Podman")
            streamed = source.stream_counts()
            assert streamed is not None and streamed.payloads >= 2

            podman.kill_service()
            podman.start_service()
            wait_for(lambda: source.stream_counts().reconnects >= 1, 20,
                     "the stream to be opened again after the restart")
            payloads = source.stream_counts().payloads
            seen = len(published.of(before))
            wait_for(lambda: source.stream_counts().payloads >= payloads + 2
                     and len(published.of(before)) >= seen + 2, 30,
                     "two more payloads and samples after the restart")
            after = run()
            wait_for(lambda: len(published.of(after)) >= 2, 30,
                     "samples of a container started after the restart")
            assert stream_threads(after) and stream_threads(before)
            times = [sample.timestamp for sample in published.of(before)]
            assert times == sorted(set(times)), "a reading published twice"
            print(f"podman restart: {source.counts}, {source.stream_counts()}")
