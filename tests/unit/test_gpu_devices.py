"""Where the GPU worker puts its model replicas."""

from docpipe.activities.gpu.devices import plan_devices, slots_for


def test_uses_the_gpus_it_was_given_up_to_those_visible():
    assert plan_devices(2, 4) == ["cuda:0", "cuda:1"]
    assert plan_devices(4, 2) == ["cuda:0", "cuda:1"]


def test_falls_back_to_the_cpu_when_no_gpu_is_visible():
    assert plan_devices(2, 0) == ["cpu"]
    assert plan_devices(0, 8) == ["cpu"]


def test_four_slots_per_gpu():
    assert slots_for(["cuda:0", "cuda:1"], 4) == 8
    assert slots_for(["cpu"], 4) == 4
