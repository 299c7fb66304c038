"""The Ray evaluator on a local 2-CPU Ray (the only Ray test module; synthetic objective, no model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from longrope.search.synthetic import SyntheticFactory, SyntheticObjective
from tests.search.search_helpers import (
    N_DIMS,
    N_DOCS,
    SCALE,
    ShuffledParallel,
    comparable,
    make_loop,
    make_seeds,
    small_config,
)

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.timeout(120)
def test_ray_evaluator_streams_results_and_survives_a_killed_actor(local_ray):
    from longrope.search.ray_evaluator import RayEvaluator

    cfg = small_config(iterations=2)
    obj = SyntheticObjective(N_DIMS, SCALE, n_docs=N_DOCS)
    ref_loop = make_loop("steady", seed=3, objective=obj, evaluator=ShuffledParallel(obj, 2, 1), config=cfg)
    reference = ref_loop.run(make_seeds(ref_loop.space))

    evaluator = RayEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS, seconds_per_doc=0.02))
    assert evaluator.slots == 2  # one actor per CPU of the local cluster (no GPU)
    killed = []

    def kill_busy_actor(progress):
        if progress.done >= 4 and not killed and evaluator._refs:
            i, _ = next(iter(evaluator._refs.values()))  # an actor with a request in flight
            killed.append(i)
            ray.kill(evaluator.actors[i], no_restart=True)

    loop = make_loop("steady", seed=3, objective=obj, evaluator=evaluator, config=cfg, on_progress=kill_busy_actor)
    res = loop.run(make_seeds(loop.space))
    assert killed and evaluator._restarts >= 1
    # ordered mode: the same canonical result as any other 2-slot evaluator, the kill cost nothing
    assert comparable(res.history) == comparable(reference.history)
    assert {h["worker"] for h in res.history} == {"ray0", "ray1"}


@pytest.mark.timeout(120)
def test_ray_actors_draw_no_library_bars(local_ray):
    """battery 15: search --ray-address --quiet printed transformers' 'Loading weights' bar from each Ray actor
    (battery 8 turned them off in the process pool's workers only); an actor now builds its objective with them
    off (the factory refuses to build while they are on)."""
    from longrope.search.ray_evaluator import RayEvaluator
    from tests.search.test_evaluators import _BarCheckingFactory

    evaluator = RayEvaluator(_BarCheckingFactory(N_DIMS, SCALE, n_docs=N_DOCS), num_workers=1, max_restarts=0)
    obj = SyntheticObjective(N_DIMS, SCALE, n_docs=N_DOCS)
    loop = make_loop("steady", seed=7, objective=obj, evaluator=evaluator, config=small_config(iterations=1))
    res = loop.run(make_seeds(loop.space))
    assert res.history and {h["worker"] for h in res.history} == {"ray0"}


def _serve_once(reply: bytes | None):
    """A one-connection TCP server on 127.0.0.1 that reads the client's first bytes and sends ``reply`` (None:
    says nothing); its port."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer():
        conn, _ = server.accept()
        with conn:
            try:
                conn.recv(64)
                if reply is not None:
                    conn.sendall(reply)
                conn.recv(64)  # until the client closes
            except OSError:  # the client hung up first (reset): nothing more to say
                pass
        server.close()

    threading.Thread(target=answer, daemon=True).start()
    return server.getsockname()[1]


def test_an_address_where_no_ray_head_answers_is_refused_in_seconds():
    """battery 15: --ray-address HOST:PORT with nothing listening made Ray retry for over 10 minutes (a warning
    every 5 s, SIGTERM ignored); now one line before Ray is asked. Battery 16: the same with something else
    listening there (a web server, a port that accepts and says nothing). A gRPC server (a Ray head's control
    store answers the HTTP/2 preface with a SETTINGS frame) passes."""
    import time

    from longrope.errors import UserError
    from longrope.search.ray_evaluator import _check_answers

    _check_answers(f"127.0.0.1:{_serve_once(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))}")
    for reply, why in ((b"HTTP/1.0 400 Bad Request\r\n\r\n", "not a Ray head"), (None, "nothing answered within")):
        port = _serve_once(reply)
        start = time.monotonic()
        with pytest.raises(UserError, match=f"no Ray cluster answers at the Ray address .*{why}"):
            _check_answers(f"127.0.0.1:{port}", timeout_s=1.0)
        assert time.monotonic() - start < 3
    start = time.monotonic()
    with pytest.raises(UserError, match="no Ray cluster answers at the Ray address"):
        _check_answers(f"127.0.0.1:{port}")  # closed now: nothing listens
    assert time.monotonic() - start < 6
    for resolved_by_ray in (None, "auto", "local"):
        _check_answers(resolved_by_ray)
    # a Ray client address is probed the same way: the client waited 30 s, then printed Ray's UserWarning before
    # the timeout (battery 20)
    start = time.monotonic()
    with pytest.raises(UserError, match="no Ray cluster answers at the Ray address 'ray://127.0.0.1:"):
        _check_answers(f"ray://127.0.0.1:{port}")
    assert time.monotonic() - start < 6
    _check_answers(f"ray://127.0.0.1:{_serve_once(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))}")
    with pytest.raises(UserError, match="names no host"):
        _check_answers("ray://")


@pytest.mark.timeout(120)
def test_a_cluster_that_stops_answering_ends_the_search_in_one_line(local_ray):
    """battery 15: after `ray stop` mid-search, ray.wait blocked until Ray's core worker gave up on the cluster
    (60 s) and ended the process itself, with no line of ours. The wait is now bounded and the cluster's control
    store probed between waits: a search whose cluster is gone stops with one UserError within seconds."""
    import socket
    import time

    from longrope.errors import UserError
    from longrope.search.ray_evaluator import RayEvaluator

    evaluator = RayEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS, seconds_per_doc=30.0), num_workers=1,
                             poll_s=0.2)
    actors = list(evaluator.actors)
    with socket.socket() as s:  # a port where nothing listens any more: the control store as `ray stop` leaves it
        s.bind(("127.0.0.1", 0))
        closed = ("127.0.0.1", s.getsockname()[1])
    assert evaluator._gcs is not None  # the local cluster's control store answered at the start: it is probed
    evaluator._gcs = closed
    obj = SyntheticObjective(N_DIMS, SCALE, n_docs=N_DOCS)
    loop = make_loop("steady", seed=7, objective=obj, evaluator=evaluator, config=small_config(iterations=1))
    start = time.monotonic()
    try:
        with pytest.raises(UserError, match=f"the Ray cluster \\(control store 127.0.0.1:{closed[1]}\\) stopped answering"):
            loop.run(make_seeds(loop.space))
        assert time.monotonic() - start < 20
    finally:
        for actor in actors:  # the local cluster is alive: free its CPU for the module's other tests
            ray.kill(actor)


def test_a_control_store_this_process_cannot_reach_at_the_start_is_not_probed():
    """Through Ray Client the driver may not reach the control store's own address; a probe failing at the start
    says nothing about the cluster later, so it is not used (the search waits on Ray alone) rather than ending a
    healthy search after one poll."""
    from longrope.search.ray_evaluator import _reachable_control_store

    class _Context:
        def __init__(self, address):
            self.gcs_address = address

    class _Ray:
        def __init__(self, address):
            self.address = address

        def get_runtime_context(self):
            return _Context(self.address)

    port = _serve_once(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # a gRPC server's SETTINGS frame: a control store
    assert _reachable_control_store(_Ray(f"127.0.0.1:{port}"), 1.0) == ("127.0.0.1", port)
    assert _reachable_control_store(_Ray(f"127.0.0.1:{port}"), 1.0) is None  # closed now
    assert _reachable_control_store(_Ray(None), 1.0) is None


def _with_a_local_ray_evaluator(body: str):
    """Run ``body`` in a new Python process, between starting a one-actor :class:`RayEvaluator` on a local Ray of its
    own (``e``) and closing it; the finished process."""
    import subprocess
    import sys

    code = ("import os, signal\n"
            "from longrope.search.ray_evaluator import RayEvaluator\n"
            "from longrope.search.synthetic import SyntheticFactory\n"
            "from tests.search.search_helpers import N_DIMS, N_DOCS, SCALE\n"
            "def mine(signum, frame): raise KeyboardInterrupt('ours')\n"
            "signal.signal(signal.SIGTERM, mine)\n"
            "e = RayEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS), address='local', num_workers=1)\n"
            "try:\n"
            + "".join(f"    {line}\n" for line in body.splitlines()) +
            "finally:\n"
            "    e.close()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=170,
                          cwd=Path(__file__).resolve().parents[2])


@pytest.mark.timeout(180)
def test_a_local_ray_instance_a_search_starts_prints_nothing_of_ray_s(tmp_path):
    """`search --ray-address local --quiet` printed Ray's start-up lines (a token-authentication WARNING, "Started a
    local Ray instance. View the dashboard at ...") on stderr (battery 20): library noise a user cannot act on."""
    out = _with_a_local_ray_evaluator("pass")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.strip() == "", out.stderr[-2000:]


@pytest.mark.timeout(180)
def test_a_search_on_a_local_ray_it_starts_keeps_its_own_sigterm_handler():
    """Battery 27a: `search --ray-address local` given SIGTERM (kill, a job scheduler's limit) printed Ray's native
    stack dump and aborted with status 134, never saying 'terminated (SIGTERM); ... --resume': ray.init replaced the
    command's SIGTERM handler (the one this process set before, ``mine``), and Ray's core worker put a native one in
    its place. The handler set before stays."""
    out = _with_a_local_ray_evaluator("try:\n"
                                      "    os.kill(os.getpid(), signal.SIGTERM)\n"
                                      "    signal.pause()\n"
                                      "except KeyboardInterrupt as exc:\n"
                                      "    print(exc)")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ours" and "SIGTERM received" not in out.stderr, out.stderr[-2000:]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kw, named", [({"factory": None}, "objective factory"), ({"num_workers": -1}, "num_workers"),
                                       ({"num_workers": "2"}, "num_workers"), ({"poll_s": -1}, "poll_s"),
                                       ({"max_restarts": -1}, "max_restarts"), ({"init_kwargs": "x"}, "init_kwargs")])
def test_the_ray_evaluator_checks_its_arguments_and_refuses_work_once_closed(local_ray, kw, named):
    """Battery 23b: the process pool's checks (battery 22a) were not the Ray evaluator's: num_workers=-1 made no actor,
    "2" and 0.5 were TypeErrors, poll_s=-1 Ray's "Timeout value out of range", a factory None or a request "junk"
    were taken and failed inside an actor; a closed one took requests and its wait answered [] for ever."""
    from longrope.errors import UserError
    from longrope.search.evaluators import EvalRequest
    from longrope.search.ray_evaluator import RayEvaluator

    args = {"factory": SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS), "num_workers": 1, **kw}
    with pytest.raises(UserError, match=named):
        RayEvaluator(args.pop("factory"), **args)
    evaluator = RayEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS), num_workers=1)
    with pytest.raises(UserError, match="EvalRequests"):
        evaluator.submit("junk")
    evaluator.close()
    evaluator.close()  # a second close is nothing
    for call in (lambda: evaluator.submit(EvalRequest(0, [1.0] * N_DIMS, 0, (0,))), evaluator.wait):
        with pytest.raises(UserError, match="is closed"):
            call()


@pytest.mark.timeout(120)
def test_an_actor_that_cannot_build_its_objective_stops_the_search_with_the_reason(local_ray):
    """Battery 23b: an actor whose objective refused its inputs (a model changed while the search ran) died in its
    creation, was restarted three times, each building it again and printing Ray's traceback, and the search ended
    with "Ray actor ray0 died and 3 restarts are used up: The actor died because of an error raised in its creation
    task ...", without the reason. It stops at once with the reason, as a process worker does."""
    from longrope.search.ray_evaluator import RayEvaluator
    from tests.search.test_evaluators import _RefusingFactory, refusal_of

    evaluator = RayEvaluator(_RefusingFactory(N_DIMS, SCALE, n_docs=N_DOCS), num_workers=1)
    assert str(refusal_of(evaluator)) == ("Ray actor ray0 could not build its objective: the model m changed while "
                                          "the search ran; put back the one it started with")
    assert evaluator._restarts == 0


@pytest.mark.timeout(120)
def test_more_actors_than_the_cluster_can_run_at_once_are_refused(local_ray):
    """Battery 23b: num_workers=4 on a 2-CPU cluster placed two actors; the requests given to the other two waited for
    ever (the cluster answered, so nothing noticed), the search with them."""
    from longrope.errors import UserError
    from longrope.search.ray_evaluator import RayEvaluator

    with pytest.raises(UserError, match=r"num_workers 3 is more actors than this Ray cluster can run at once \(2: one "
                                        r"CPU each, on the nodes it has now\); give at most 2"):
        RayEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS), num_workers=3)
    RayEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS), num_workers=2).close()
