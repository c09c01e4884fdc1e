# ruff: noqa: E501  (before/after pairs hold converted lines as the converter writes them)
"""Before/after source pairs for the converter (libcst's assertCodemod habit), must-not-change pairs first."""

from __future__ import annotations

import textwrap

import pytest

from asgd_bridge.convert.files import convert_paths
from asgd_bridge.convert.rules import (
    ASGD_RULES,
    GROUP_KEY_RULES,
    SAG_RULES,
    SGD_RULES,
    Action,
    ArgRule,
    markdown,
    positional_names,
    sgd_weight_decay,
)
from asgd_bridge.convert.transform import InvalidPython, convert_source
from asgd_bridge.hyperparams import ASGD_DEFAULTS, SAG_DEFAULTS


def _d(src: str) -> str:
    return textwrap.dedent(src).lstrip("\n")


# ----------------------------------------------------------------------------------------------- no-ops
NOOPS = {
    "no_asgd": "import torch\nopt = torch.optim.SGD(model.parameters(), lr=0.1)  # note\n",
    "other_optimizers": "from torch.optim import Adam, SGD\nopt = Adam(params)\n",
    "local_class_named_asgd": "class ASGD:\n    pass\n\n\nopt = ASGD(params, lr=0.1)\n",
    "unrelated_module_asgd": "import mylib\n\nopt = mylib.ASGD(params, lr=0.1)\n",
    "string_mentions": 'doc = "torch.optim.ASGD is averaged SGD"  # ASGD\n',
    "attribute_named_asgd": "self.ASGD = 3\nprint(cfg.ASGD)\n",
    "paddle_asgd_left_alone_to_paddle": "import paddle\n\nopt = paddle.optimizer.ASGD(parameters=ps)\n",
    "torch_asgd_left_alone_to_torch": "import torch\n\nopt = torch.optim.ASGD(params)\n",
    "unknown_keyword_reported": "import torch\n\nopt = torch.optim.ASGD(model.parameters(), momentum=0.9)\n",
    "too_many_positional": "import torch\n\nopt = torch.optim.ASGD(p, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)\n",
    "missing_params": "import torch\n\nopt = torch.optim.ASGD(lr=0.1)\n",
    "already_converted": _d("""
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=0.01, weight_decay=0.0)
        """),
    "runtime_already_wrapped": _d("""
        import asgd_bridge.convert.runtime

        x = asgd_bridge.convert.runtime.param_groups(optimizer)[0]
        """),
    "shadowed_by_assignment": "ASGD = make_optimizer\nopt = ASGD(params)\n",
    "star_import_of_another_module": "from mylib.optim import *\nopt = ASGD(params)\n",
    "crlf_file_without_asgd": "import torch\r\nx = 1\r\n",
    "paddle_subclass_reported_to_torch": _d("""
        import paddle


        class Mine(paddle.optimizer.ASGD):
            pass
        """),
    "comment_mentions_only": "# switch to ASGD later\nopt = torch.optim.SGD(p)\nopt.param_groups[0]['lr'] = 1\n",
    "parameter_shadows_name": "from torch.optim import ASGD\n\n\ndef f(ASGD):\n    return ASGD\n",
    "unused_import_only": "from torch.optim import ASGD  # for later\n",
    "relative_import_like_torch_itself": "from .asgd import ASGD\n\nopt = ASGD(p)\n",
    "paddle_sgd_to_torch": "import paddle\n\nopt = paddle.optimizer.SGD(parameters=ps)  # ASGD later\n",
    "paddle_without_parameters_to_torch": "import paddle\n\nopt = paddle.optimizer.ASGD()\n",
    "paddle_too_many_positional_to_torch": "import paddle\n\nopt = paddle.optimizer.ASGD(0.1, 1, ps, 0, None, 0, 'n', 8)\n",
    "paddle_unknown_regulariser_to_torch": _d("""
        import paddle

        opt = paddle.optimizer.ASGD(parameters=ps, weight_decay=MyDecay(0.1))
        """),
    "paddle_lr_scheduler_to_torch": _d("""
        import paddle

        opt = paddle.optimizer.ASGD(learning_rate=paddle.optimizer.lr.StepDecay(0.1, step_size=10), parameters=ps)
        """),
    "paddle_lr_scheduler_positional_from_import_to_torch": _d("""
        from paddle.optimizer import ASGD
        from paddle.optimizer.lr import CosineAnnealingDecay as Cosine

        opt = ASGD(Cosine(0.1, T_max=5), 2, ps)
        """),
    "paddle_lr_scheduler_variable_to_torch": _d("""
        import paddle.optimizer.lr as lr_sched
        import paddle

        scheduler = lr_sched.ExponentialDecay(learning_rate=0.1, gamma=0.9)
        opt = paddle.optimizer.ASGD(learning_rate=scheduler, parameters=ps)
        """),
}
NOOPS.update(
    {
        # a name or module that only looks like torch's, or a call Python refuses when it runs
        "torch_is_a_namespace": _d("""
            from types import SimpleNamespace

            torch = SimpleNamespace(optim=SimpleNamespace(ASGD=dict))
            opt = torch.optim.ASGD(ps)
            """),
        "torch_may_be_a_namespace_reported": _d("""
            import torch

            if fake:
                torch = SimpleNamespace()
            opt = torch.optim.ASGD(ps)
            """),
        "positional_and_keyword_lr_reported": "import torch\n\nopt = torch.optim.ASGD(ps, 0.1, lr=0.2)\n",
        "positional_and_keyword_lr_from_import_reported": "from torch.optim import ASGD\n\nopt = ASGD(ps, 0.1, lr=0.2)\n",
        "getattr_with_a_run_time_name": "import torch\n\ncls = getattr(torch.optim, name)  # may be ASGD\n",
        "getattr_of_another_module": "import mylib\n\ncls = getattr(mylib.optim, 'ASGD')\n",
        "self_param_groups_of_a_plain_class": _d("""
            class Tracker:  # ASGD-style lr tracking
                def lr(self):
                    return self.param_groups[0]['lr']
            """),
        "model_state_dict_left_alone": _d("""
            import torch

            sd = model.state_dict()  # ASGD below
            model.load_state_dict(sd)
            """),
        "asgd_only_state_dict_left_alone": _d("""
            import asgd_bridge.paddle

            opt = asgd_bridge.paddle.ASGD(parameters=ps)  # ASGD
            sd = opt.state_dict()
            """),
        "local_function_named_asgd": "def ASGD(params, lr):\n    return SGD(params, lr)\n\n\nopt = ASGD(ps, lr=0.1)\n",
    }
)
NOOP_DIRECTION = {k: "torch" for k in NOOPS if k.endswith("_to_torch")}


@pytest.mark.parametrize("name", list(NOOPS))
def test_must_not_change(name: str) -> None:
    src = NOOPS[name]
    result = convert_source(src, to=NOOP_DIRECTION.get(name, "paddle"))
    assert result.code == src


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("unknown_keyword_reported", "momentum"),
        ("too_many_positional", "too many positional"),
        ("missing_params", "params is missing"),
        ("paddle_subclass_reported_to_torch", "subclass"),
        ("paddle_without_parameters_to_torch", "parameters missing"),
        ("paddle_too_many_positional_to_torch", "too many positional arguments for paddle.optimizer.ASGD"),
        ("paddle_unknown_regulariser_to_torch", "no rule"),
        ("paddle_lr_scheduler_to_torch", "paddle.optimizer.lr.StepDecay: a Paddle LRScheduler"),
        ("paddle_lr_scheduler_positional_from_import_to_torch", "CosineAnnealingDecay: a Paddle LRScheduler"),
        ("paddle_lr_scheduler_variable_to_torch", "learning_rate=scheduler is a paddle.optimizer.lr."),
        ("torch_may_be_a_namespace_reported", "torch may be another object than the module here"),
        ("positional_and_keyword_lr_reported", "TypeError when the call runs: torch.optim.ASGD got multiple values for argument 'lr'"),
        ("positional_and_keyword_lr_from_import_reported", "multiple values for argument 'lr'"),
    ],
)
def test_unconvertible_calls_are_reported_not_dropped(name: str, reason: str) -> None:
    result = convert_source(NOOPS[name], to=NOOP_DIRECTION.get(name, "paddle"))
    assert [c.kind for c in result.changes] == ["report"]
    assert reason in result.changes[0].reason


# ----------------------------------------------------------------------------------------------- rewrites
PAIRS = {
    "keyword_defaults_written_out": (
        """
        import torch

        opt = torch.optim.ASGD(model.parameters())
        opt.step()
        print(opt.state_dict())
        """,
        """
        import torch
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=0.01, weight_decay=0.0)
        opt.step()
        print(opt.state_dict())
        """,
    ),
    "import_torch_optim_as_optim_keeps_comment": (
        """
        import torch.optim as optim

        opt = optim.ASGD(model.parameters(), lr=0.1)  # tuned
        use(opt)
        """,
        """
        import torch.optim as optim
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=0.1, weight_decay=0.0)  # tuned
        use(opt)
        """,
    ),
    "from_torch_import_optim_all_keywords": (
        """
        from torch import optim

        opt = optim.ASGD(params, lr=0.1, lambd=1e-3, alpha=0.5, t0=10, weight_decay=1e-2)
        use(opt)
        """,
        """
        from torch import optim
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=params, learning_rate=0.1, lambd=1e-3, alpha=0.5, t0=10, weight_decay=1e-2)
        use(opt)
        """,
    ),
    "from_import_as_removes_unused_import": (
        """
        from torch.optim import ASGD as Averaged
        from torch.optim import SGD

        opt = Averaged(model.parameters(), lr=0.1)
        use(opt)
        """,
        """
        from torch.optim import SGD
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=0.1, weight_decay=0.0)
        use(opt)
        """,
    ),
    "module_path_torch_optim_asgd": (
        """
        import torch

        opt = torch.optim.asgd.ASGD(model.parameters(), 0.05, 0.0, 0.75, 0.0, 1e-5)
        use(opt)
        """,
        """
        import torch
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=0.05, lambd=0.0, alpha=0.75, t0=0.0, weight_decay=1e-5)
        use(opt)
        """,
    ),
    "every_argument_positional": (
        """
        import torch

        opt = torch.optim.ASGD(model.parameters(), 0.1, 1e-4, 0.75, 1e6, 1e-5, None, True, False, False)
        use(opt)
        """,
        """
        import torch
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=0.1, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=1e-5, maximize=True)
        use(opt)
        """,
    ),
    "multiline_switches_dropped_comments_kept": (
        """
        import torch

        opt = torch.optim.ASGD(
            model.parameters(),  # all of them
            lr=0.1,  # base lr
            foreach=True,
            differentiable=False,
        )
        use(opt)
        """,
        """
        import torch
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(
            parameters=model.parameters(),  # all of them
            learning_rate=0.1,  # base lr
            weight_decay=0.0,
        )
        use(opt)
        """,
    ),
    "param_groups_own_lr_and_weight_decay": (
        """
        import torch

        opt = torch.optim.ASGD(
            [{"params": enc.parameters(), "lr": 0.5, "weight_decay": 1e-3, "foreach": False},
             {"params": dec.parameters()}],
            lr=0.1,
        )
        use(opt)
        """,
        """
        import torch
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(
            parameters=[{"params": enc.parameters(), "lr": 0.5, "weight_decay": 1e-3},
             {"params": dec.parameters()}],
            learning_rate=0.1,
            weight_decay=0.0,
        )
        use(opt)
        """,
    ),
    "kwargs_from_config_mapped_at_run_time": (
        """
        import torch

        opt = torch.optim.ASGD(model.parameters(), **config["optim"])
        """,
        """
        import torch
        import asgd_bridge.convert.runtime

        opt = asgd_bridge.convert.runtime.ASGD(model.parameters(), **config["optim"])
        """,
    ),
    "sgd_exact_when_lambd_is_zero": (
        """
        import torch

        opt = torch.optim.ASGD(model.parameters(), lr=0.1, lambd=0.0, weight_decay=1e-4)
        for x in data:
            opt.zero_grad()
            opt.step()
        """,
        """
        import torch
        import paddle

        opt = paddle.optimizer.SGD(parameters=model.parameters(), learning_rate=0.1, weight_decay=0.0001)
        for x in data:
            opt.zero_grad()
            opt.step()
        """,
    ),
    "sgd_exact_when_alpha_is_zero_lambd_folded": (
        """
        import torch

        opt = torch.optim.ASGD(model.parameters(), lr=0.1, lambd=0.5, alpha=0, t0=0)
        opt.step()
        """,
        """
        import torch
        import paddle

        opt = paddle.optimizer.SGD(parameters=model.parameters(), learning_rate=0.1, weight_decay=0.5)
        opt.step()
        """,
    ),
    "bare_reference_takes_torch_arguments": (
        """
        import torch

        OPTIMIZERS = {"asgd": torch.optim.ASGD, "sgd": torch.optim.SGD}
        """,
        """
        import torch
        import asgd_bridge.convert.runtime

        OPTIMIZERS = {"asgd": asgd_bridge.convert.runtime.ASGD, "sgd": torch.optim.SGD}
        """,
    ),
    "isinstance_and_annotation_get_the_class": (
        """
        import torch


        def averaged(opt: torch.optim.ASGD) -> bool:
            return isinstance(opt, torch.optim.ASGD)
        """,
        """
        import torch
        import asgd_bridge.paddle


        def averaged(opt: asgd_bridge.paddle.ASGD) -> bool:
            return isinstance(opt, asgd_bridge.paddle.ASGD)
        """,
    ),
    "subclass_and_super_init_keywords": (
        """
        import torch


        class NTASGD(torch.optim.ASGD):
            \"\"\"Non-monotonically triggered ASGD.\"\"\"

            def __init__(self, params, lr=1.0, weight_decay=0.0):
                super().__init__(params=params, lr=lr, lambd=0.0, t0=0, weight_decay=weight_decay)
        """,
        """
        import torch
        import asgd_bridge.paddle


        class NTASGD(asgd_bridge.paddle.ASGD):
            \"\"\"Non-monotonically triggered ASGD.\"\"\"

            def __init__(self, params, lr=1.0, weight_decay=0.0):
                super().__init__(parameters=params, learning_rate=lr, lambd=0.0, t0=0, weight_decay=weight_decay)
        """,
    ),
    "subclass_explicit_base_init": (
        """
        from torch.optim import ASGD


        class Mine(ASGD):
            def __init__(self, params):
                ASGD.__init__(self, params, 0.1)
        """,
        """
        import asgd_bridge.paddle


        class Mine(asgd_bridge.paddle.ASGD):
            def __init__(self, params):
                asgd_bridge.paddle.ASGD.__init__(self, parameters=params, learning_rate=0.1, weight_decay=0.0)
        """,
    ),
    "subclass_forwarding_star_args_keeps_torch_signature": (
        """
        import torch


        class Mine(torch.optim.ASGD):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
        """,
        """
        import torch
        import asgd_bridge.convert.runtime


        class Mine(asgd_bridge.convert.runtime.ASGD):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
        """,
    ),
    "awd_lstm_switch_param_groups_work_in_both_phases": (
        """
        import torch

        optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd)
        if 't0' not in optimizer.param_groups[0] and stalled:
            optimizer = torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0., weight_decay=wd)
        optimizer.param_groups[0]['lr'] = lr * seq_len / bptt
        """,
        """
        import torch
        import asgd_bridge.convert.runtime
        import asgd_bridge.paddle

        optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd)
        if 't0' not in asgd_bridge.convert.runtime.param_groups(optimizer)[0] and stalled:
            optimizer = asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=lr, t0=0, lambd=0., weight_decay=wd)
        asgd_bridge.convert.runtime.param_groups(optimizer)[0]['lr'] = lr * seq_len / bptt
        """,
    ),
    "awd_lstm_switch_made_in_a_function": (
        """
        import torch


        def switch(model):
            return torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0)


        class Trainer:
            def fit(self):
                if 't0' not in self.opt.param_groups[0]:
                    self.opt = switch(self.model)
        """,
        """
        import torch
        import asgd_bridge.convert.runtime
        import asgd_bridge.paddle


        def switch(model):
            return asgd_bridge.paddle.ASGD(parameters=model.parameters(), learning_rate=lr, t0=0, lambd=0.0, weight_decay=0.0)


        class Trainer:
            def fit(self):
                if 't0' not in asgd_bridge.convert.runtime.param_groups(self.opt)[0]:
                    self.opt = switch(self.model)
        """,
    ),
    "subclass_own_param_groups_left_alone": (
        """
        import torch


        class Mine(torch.optim.ASGD):
            def lrs(self):
                return [g["lr"] for g in self.param_groups]
        """,
        """
        import torch
        import asgd_bridge.paddle


        class Mine(asgd_bridge.paddle.ASGD):
            def lrs(self):
                return [g["lr"] for g in self.param_groups]
        """,
    ),
    "named_parameters_stripped_at_run_time": (
        """
        import torch

        opt = torch.optim.ASGD(model.named_parameters(), lr=0.1)
        use(opt)
        """,
        """
        import torch
        import asgd_bridge.convert.runtime
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=asgd_bridge.convert.runtime.torch_param_groups(model.named_parameters()), learning_rate=0.1, weight_decay=0.0)
        use(opt)
        """,
    ),
    "paddle_to_torch_sag": (
        """
        import paddle

        opt = paddle.optimizer.ASGD(learning_rate=0.01, batch_num=4, parameters=model.parameters(), weight_decay=None, name="x")
        """,
        """
        import paddle
        import asgd_bridge.torch

        opt = asgd_bridge.torch.SAG(lr=0.01, batch_num=4, params=model.parameters(), weight_decay=0.0)
        """,
    ),
    "paddle_to_torch_positional_regulariser_and_clip": (
        """
        from paddle.optimizer import ASGD
        from paddle.regularizer import L1Decay
        import paddle

        opt = ASGD(0.1, 2, model.parameters(), L1Decay(1e-4), paddle.nn.ClipGradByValue(1.0, min=-0.5))
        """,
        """
        from paddle.regularizer import L1Decay
        import paddle
        import asgd_bridge.torch

        opt = asgd_bridge.torch.SAG(lr=0.1, batch_num=2, params=model.parameters(), weight_decay=("l1", 1e-4), grad_clip=("value", -0.5, 1.0))
        """,
    ),
    "paddle_to_torch_optimizer_methods": (
        """
        import paddle

        opt = paddle.optimizer.ASGD(0.1, 2, ps)
        other = paddle.optimizer.SGD(parameters=qs)
        opt.clear_grad()
        other.clear_grad()
        opt.set_lr(opt.get_lr() / 2)
        opt.set_state_dict(state)
        """,
        """
        import paddle
        import asgd_bridge.convert.runtime
        import asgd_bridge.torch

        opt = asgd_bridge.torch.SAG(lr=0.1, batch_num=2, params=ps)
        other = paddle.optimizer.SGD(parameters=qs)
        opt.zero_grad()
        other.clear_grad()
        asgd_bridge.convert.runtime.set_lr(opt, asgd_bridge.convert.runtime.get_lr(opt) / 2)
        opt.load_state_dict(state)
        """,
    ),
    "paddle_to_torch_lr_variable_is_a_float_in_its_own_scope": (
        """
        import paddle

        lr = paddle.optimizer.lr.StepDecay(0.1, step_size=10)


        def make(ps):
            lr = 0.1
            return paddle.optimizer.ASGD(learning_rate=lr, parameters=ps)
        """,
        """
        import paddle
        import asgd_bridge.torch

        lr = paddle.optimizer.lr.StepDecay(0.1, step_size=10)


        def make(ps):
            lr = 0.1
            return asgd_bridge.torch.SAG(lr=lr, params=ps)
        """,
    ),
    "paddle_to_torch_default_lr_written": (
        """
        import paddle

        opt = paddle.optimizer.ASGD(parameters=ps, grad_clip=paddle.nn.ClipGradByGlobalNorm(clip_norm=1.0))
        """,
        """
        import paddle
        import asgd_bridge.torch

        opt = asgd_bridge.torch.SAG(params=ps, grad_clip=("global_norm", 1.0), lr=0.001)
        """,
    ),
}


# Binding-precise resolution, the torch-only surface of optimizer variables, run-time values (issue 10).
PAIRS.update({
    "star_import_from_torch_optim": (
        """
        from torch.optim import *

        opt = ASGD(params, lr=0.1)
        """,
        """
        from torch.optim import *
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=params, learning_rate=0.1, weight_decay=0.0)
        """,
    ),
    "getattr_with_literal_name": (
        """
        import torch

        cls = getattr(torch.optim, 'ASGD')
        opt = getattr(torch.optim, "ASGD")(ps, lr=0.1)
        """,
        """
        import torch
        import asgd_bridge.convert.runtime
        import asgd_bridge.paddle

        cls = asgd_bridge.convert.runtime.ASGD
        opt = asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=0.1, weight_decay=0.0)
        """,
    ),
    "partial_rebinding_keeps_the_name": (
        """
        import functools
        from torch.optim import ASGD

        ASGD = functools.partial(ASGD, lr=0.1)
        opt = ASGD(params)
        """,
        """
        import functools
        from asgd_bridge.convert.runtime import ASGD
        import asgd_bridge.convert.runtime

        ASGD = functools.partial(asgd_bridge.convert.runtime.ASGD, lr=0.1)
        opt = ASGD(params)
        """,
    ),
    "subclass_named_like_its_base": (
        """
        from torch.optim import ASGD


        class ASGD(ASGD):
            def __init__(self, params):
                super().__init__(params, lr=0.1)


        opt = ASGD(ps)
        """,
        """
        from asgd_bridge.convert.runtime import ASGD
        import asgd_bridge.paddle


        class ASGD(asgd_bridge.paddle.ASGD):
            def __init__(self, params):
                super().__init__(parameters=params, learning_rate=0.1, weight_decay=0.0)


        opt = ASGD(ps)
        """,
    ),
    "function_named_like_the_class": (
        """
        from torch.optim import ASGD, SGD


        def ASGD(params):
            return SGD(params)


        opt = ASGD(ps)
        """,
        """
        from torch.optim import SGD; from asgd_bridge.convert.runtime import ASGD


        def ASGD(params):
            return SGD(params)


        opt = ASGD(ps)
        """,
    ),
    "self_param_groups_of_an_unrelated_class": (
        """
        import torch


        class Tracker:
            def lr(self):
                return self.param_groups[0]['lr']


        opt = torch.optim.ASGD(ps)
        x = opt.param_groups
        """,
        """
        import torch
        import asgd_bridge.paddle


        class Tracker:
            def lr(self):
                return self.param_groups[0]['lr']


        opt = asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=0.01, weight_decay=0.0)
        x = opt.param_groups
        """,
    ),
    "optimizer_on_an_attribute_keeps_averaged_sgd": (
        """
        import torch


        class Trainer:
            def __init__(self, m):
                self.optimizer = torch.optim.ASGD(m.parameters(), lambd=0.0)


        trainer = Trainer(m)
        scheduler = StepLR(trainer.optimizer, 3)
        """,
        """
        import torch
        import asgd_bridge.paddle


        class Trainer:
            def __init__(self, m):
                self.optimizer = asgd_bridge.paddle.ASGD(parameters=m.parameters(), lambd=0.0, learning_rate=0.01, weight_decay=0.0)


        trainer = Trainer(m)
        scheduler = StepLR(trainer.optimizer, 3)
        """,
    ),
    "tensor_and_numpy_lr": (
        """
        import numpy as np
        import torch

        a = torch.optim.ASGD(ps, lr=torch.tensor(0.1))
        b = torch.optim.ASGD(ps, np.float32(0.1))
        lr = torch.tensor(0.1)
        c = torch.optim.ASGD(ps, lr=lr)
        d = torch.optim.ASGD(ps, lr=args.lr)
        """,
        """
        import numpy as np
        import torch
        import asgd_bridge.convert.runtime
        import asgd_bridge.paddle

        a = asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=asgd_bridge.convert.runtime.torch_lr(torch.tensor(0.1)), weight_decay=0.0)
        b = asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=asgd_bridge.convert.runtime.torch_lr(np.float32(0.1)), weight_decay=0.0)
        lr = torch.tensor(0.1)
        c = asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=asgd_bridge.convert.runtime.torch_lr(lr), weight_decay=0.0)
        d = asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=args.lr, weight_decay=0.0)
        """,
    ),
    "defaults_through_the_runtime": (
        """
        import torch

        opt = torch.optim.ASGD(ps, lr=0.1)
        base = opt.defaults['lr']
        """,
        """
        import torch
        import asgd_bridge.convert.runtime
        import asgd_bridge.paddle

        opt = asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=0.1, weight_decay=0.0)
        base = asgd_bridge.convert.runtime.defaults(opt)['lr']
        """,
    ),
    "patched_step_reaches_the_real_class": (
        """
        import torch

        orig = torch.optim.ASGD.step
        torch.optim.ASGD.step = patched
        opt = torch.optim.ASGD(ps)
        """,
        """
        import torch
        import asgd_bridge.paddle

        orig = asgd_bridge.paddle.ASGD.step
        asgd_bridge.paddle.ASGD.step = patched
        opt = asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=0.01, weight_decay=0.0)
        """,
    ),
    "resume_state_dict_in_torch_layout": (
        """
        import torch

        optimizer = torch.optim.SGD(ps, lr=1.0)
        sd = optimizer.state_dict()
        if 't0' in sd['param_groups'][0]:
            optimizer = torch.optim.ASGD(ps, t0=0)
        optimizer.load_state_dict(sd)
        model.load_state_dict(weights)
        """,
        """
        import torch
        import asgd_bridge.convert.runtime
        import asgd_bridge.paddle

        optimizer = torch.optim.SGD(ps, lr=1.0)
        sd = asgd_bridge.convert.runtime.state_dict(optimizer)
        if 't0' in sd['param_groups'][0]:
            optimizer = asgd_bridge.paddle.ASGD(parameters=ps, t0=0, learning_rate=0.01, weight_decay=0.0)
        asgd_bridge.convert.runtime.load_state_dict(optimizer, sd)
        model.load_state_dict(weights)
        """,
    ),
})


@pytest.mark.parametrize("name", list(PAIRS))
def test_rewrite(name: str) -> None:
    before, after = (_d(s) for s in PAIRS[name])
    to = "torch" if name.startswith("paddle_to_torch") else "paddle"
    result = convert_source(before, to=to)
    assert result.code == after
    assert not result.reports
    assert convert_source(result.code, to=to).code == result.code  # converting twice changes nothing


def test_more_noops_than_rewrites() -> None:
    assert len(NOOPS) >= len(PAIRS)


@pytest.mark.parametrize("name", list(PAIRS))
def test_lines_outside_rewritten_calls_are_byte_identical(name: str) -> None:
    before = _d(PAIRS[name][0]).replace("\n", "\n# keep me\n", 1)
    to = "torch" if name.startswith("paddle_to_torch") else "paddle"
    after = convert_source(before, to=to).code
    assert "# keep me\n" in after


def test_crlf_line_endings_survive() -> None:
    src = "import torch\r\nopt = torch.optim.ASGD(p)  # x\r\nuse(opt)\r\n"
    out = convert_source(src).code
    assert out.count("\r\n") == out.count("\n") and "# x\r\n" in out


# ----------------------------------------------------------------------------------------------- the table
def test_every_torch_argument_has_a_row_in_torch_order() -> None:
    import inspect

    import torch
    names = [n for n in inspect.signature(torch.optim.ASGD.__init__).parameters if n != "self"]
    assert list(positional_names(ASGD_RULES)) == names


def test_every_paddle_argument_has_a_row_in_paddle_order() -> None:
    import inspect

    import paddle
    names = [n for n in inspect.signature(paddle.optimizer.ASGD.__init__).parameters if n != "self"]
    assert list(positional_names(SAG_RULES)) == names


def test_defaults_come_from_hyperparams() -> None:
    for rule in ASGD_RULES:
        if rule.source in ASGD_DEFAULTS:
            assert rule.default == ASGD_DEFAULTS[rule.source]
    assert SAG_RULES[0].default == SAG_DEFAULTS["lr"]


def test_no_row_drops_without_a_reason() -> None:
    for rule in (*ASGD_RULES, *SAG_RULES, *GROUP_KEY_RULES, *SGD_RULES):
        assert rule.reason
        if rule.action is Action.DROP:
            assert rule.target is None


def test_plain_sgd_rows_cover_every_torch_argument() -> None:
    assert positional_names(SGD_RULES) == positional_names(ASGD_RULES)


def test_docs_rules_table_is_printed_from_the_rows() -> None:
    """docs/migration.md holds what ``python -m asgd_bridge.convert.rules --markdown`` prints."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "migration.md").read_text()
    start = "<!-- rules-table:start (python -m asgd_bridge.convert.rules --markdown) -->\n"
    block = doc.split(start, 1)[1].split("\n<!-- rules-table:end -->", 1)[0]
    assert block == markdown(), "run python -m asgd_bridge.convert.rules --markdown and paste its output"
    for rule in (*ASGD_RULES, *SAG_RULES, *SGD_RULES):
        assert f"| {rule.source} | {rule.target or '-'} |" in block


def test_rules_markdown_command_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    from asgd_bridge.convert.rules import main

    main(["--markdown"])
    assert capsys.readouterr().out == markdown() + "\n"


@pytest.mark.parametrize(
    ("direction", "rules"), [("paddle", ASGD_RULES), ("paddle", SGD_RULES), ("torch", SAG_RULES)]
)
def test_every_value_converter_a_row_names_exists(direction: str, rules: tuple[ArgRule, ...]) -> None:
    from libcst.codemod import CodemodContext

    from asgd_bridge.convert import runtime
    from asgd_bridge.convert.transform import DIRECTIONS

    command = DIRECTIONS[direction](CodemodContext())
    names = {rule.value for rule in rules if rule.value is not None}
    assert names and names <= set(command.converters)
    if rules is ASGD_RULES:  # TorchASGD applies the same rows at run time
        assert names <= set(runtime._VALUE_CONVERTERS)


def test_a_new_argument_is_one_row() -> None:
    """A codemod over the table plus one row carries the new argument; nothing else changes."""
    import libcst as cst
    from libcst.codemod import CodemodContext

    from asgd_bridge.convert.to_paddle import TorchToPaddle

    class WithRow(TorchToPaddle):
        RULES = (*ASGD_RULES, ArgRule("beta", "beta_paddle", 0.5, Action.RENAME, "a new row", write_default=True))

    def convert(src: str) -> str:
        return WithRow(CodemodContext()).transform_module(cst.parse_module(src)).code

    head = "import torch\n\nopt = torch.optim.ASGD("
    assert convert(head + "ps, beta=0.9)\n").endswith(
        "asgd_bridge.paddle.ASGD(parameters=ps, beta_paddle=0.9, learning_rate=0.01, weight_decay=0.0)\n"
    )
    assert convert(head + "ps)\n").endswith(
        "asgd_bridge.paddle.ASGD(parameters=ps, learning_rate=0.01, weight_decay=0.0, beta_paddle=0.5)\n"
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"lambd": 0.0, "alpha": 0.75, "weight_decay": 1e-3}, 1e-3),
        ({"lambd": 0.5, "alpha": 0.0, "weight_decay": 0.0}, 0.5),
        ({"lambd": 1e-4, "alpha": 0.75, "weight_decay": 0.0}, None),
        ({"lambd": 0.0, "alpha": 0.75, "weight_decay": 0.0, "maximize": True}, None),
    ],
)
def test_sgd_exactness_rule(values: dict, expected: float | None) -> None:
    assert sgd_weight_decay(values) == expected


def test_sgd_exactness_matches_the_reference_steps() -> None:
    """The SGD fast path is exact in float64: torch's ASGD step equals SGD with wd = lambd + wd."""
    import numpy as np

    from asgd_bridge.reference import asgd_init, asgd_step

    rng = np.random.default_rng(0)
    for lambd, alpha in ((0.0, 0.75), (0.3, 0.0)):
        p = rng.standard_normal(5)
        q = p.copy()
        state = asgd_init(p, 0.1)
        wd = sgd_weight_decay({"lambd": lambd, "alpha": alpha, "weight_decay": 0.01})
        assert wd is not None
        for _ in range(20):
            g = rng.standard_normal(5)
            p, state = asgd_step(p, g, state, lr=0.1, lambd=lambd, alpha=alpha, weight_decay=0.01)
            q = q - 0.1 * (g + wd * q)
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------- SGD or not
_SGD_CASES = {
    # plain SGD is exact: eta constant, nothing reads ax / state / param_groups, params are tensors
    "parameters_lambd_zero": ("opt = torch.optim.ASGD(model.parameters(), lr=0.1, lambd=0.0)", True),
    "layer_tensors_alpha_zero": ("opt = torch.optim.ASGD([lin.weight, lin.bias], 0.1, 0.5, 0)", True),
    # plain SGD would be wrong
    "names_may_be_group_dicts": ("opt = torch.optim.ASGD([body, head], lr=0.1, lambd=0.0)", False),
    "group_dicts": ("opt = torch.optim.ASGD([{'params': ps, 'lr': 1.0}], lr=0.1, lambd=0.0)", False),
    "eta_decays": ("opt = torch.optim.ASGD(model.parameters(), lr=0.1)", False),
    "maximize": ("opt = torch.optim.ASGD(model.parameters(), lambd=0.0, maximize=True)", False),
    "lambd_from_config": ("opt = torch.optim.ASGD(model.parameters(), lambd=cfg.lambd)", False),
    "ax_read": ("opt = torch.optim.ASGD(model.parameters(), lambd=0.0)\nx = opt.state[p]['ax']", False),
    "scheduler": ("opt = torch.optim.ASGD(model.parameters(), lambd=0.0)\ns = StepLR(opt, 3)", False),
    "closure_step": ("opt = torch.optim.ASGD(model.parameters(), lambd=0.0)\nopt.step(closure)", False),
    "not_assigned": ("train(torch.optim.ASGD(model.parameters(), lambd=0.0))", False),
    "reassigned": ("opt = torch.optim.ASGD(model.parameters(), lambd=0.0)\nopt = make()", False),
}


@pytest.mark.parametrize("name", list(_SGD_CASES))
def test_plain_sgd_only_when_provably_exact(name: str) -> None:
    body, sgd = _SGD_CASES[name]
    result = convert_source(f"import torch\n\n{body}\nopt.zero_grad()\nopt.step()\n")
    targets = [c.target for c in result.changes if c.kind == "constructor"]
    assert targets == ["paddle.optimizer.SGD" if sgd else "asgd_bridge.paddle.ASGD"]


def test_lr_scheduler_report_says_what_to_do() -> None:
    (report,) = convert_source(NOOPS["paddle_lr_scheduler_to_torch"], to="torch").reports
    assert (report.line, report.column) == (3, 7) and report.target == "(unchanged)"
    assert "set lr to its initial value and attach a torch.optim.lr_scheduler by hand" in report.reason


def test_group_key_report_points_at_the_key() -> None:
    src = "import torch\n\nopt = torch.optim.ASGD(\n    [{'params': ps, 'betas': (0.9, 0.99)}], lr=0.1\n)\n"
    (report,) = convert_source(src).reports
    assert (report.line, report.column) == (4, 21) and "'betas'" in report.reason


# ----------------------------------------------------------------------------------------------- valid Python
@pytest.mark.parametrize(
    "src",
    [
        "from torch.optim import ASGD\n\nopt = ASGD(ps, lr=0.1, lr=0.2)\n",  # compiler: keyword repeated
        "import torch\n\nopt = torch.optim.ASGD(\n    ps,\n    'abc)\n",  # tokenizer: unterminated string
        "import torch\n\nif x:\nopt = torch.optim.ASGD(ps)\n",  # indentation
        "import torch\nreturn torch.optim.ASGD(ps)\n",  # parses, but does not compile
    ],
)
def test_invalid_python_is_reported_at_pythons_position(src: str) -> None:
    with pytest.raises(SyntaxError) as python:
        compile(src, "<string>", "exec", dont_inherit=True)
    with pytest.raises(InvalidPython) as ours:
        convert_source(src)
    assert (ours.value.lineno, ours.value.offset) == (python.value.lineno, python.value.offset)
    assert (ours.value.raw_line, ours.value.raw_column + 1) == (python.value.lineno, python.value.offset)
    assert python.value.msg in str(ours.value)


def test_invalid_file_is_left_unchanged_with_pythons_position(tmp_path) -> None:
    path = tmp_path / "bad.py"
    src = "from torch.optim import ASGD\n\nopt = ASGD(ps, lr=0.1, lr=0.2)\n"
    path.write_text(src)
    [outcome] = convert_paths(path, tmp_path / "out.py")
    assert outcome.error is not None and "bad.py:3:24: invalid Python: keyword argument repeated" in outcome.error
    assert path.read_text() == src and not (tmp_path / "out.py").exists()


@pytest.mark.parametrize("name", list(PAIRS))
def test_every_rewrite_compiles(name: str) -> None:
    to = "torch" if name.startswith("paddle_to_torch") else "paddle"
    compile(convert_source(_d(PAIRS[name][0]), to=to).code, name, "exec", dont_inherit=True)


def test_pickled_optimizer_is_reported_with_the_replacement() -> None:
    src = _d("""
        import torch

        opt = torch.optim.ASGD(ps)
        torch.save([model, criterion, opt], f)
        torch.save(opt, 'opt.pt')
        torch.save(opt.state_dict(), 'opt.pt')
        torch.save([model.state_dict(), 3], f)
        """)
    first, second = convert_source(src).reports
    assert (first.line, second.line) == (4, 5)
    assert "write torch.save([model.state_dict(), criterion.state_dict(), opt.state_dict()], f)" in first.reason
    assert "write torch.save(opt.state_dict(), 'opt.pt')" in second.reason


def test_a_mixed_name_keeps_every_bindings_meaning() -> None:
    """``ASGD = functools.partial(ASGD, lr=0.1)``: the call stays a call of the partial (lr 0.1), whose
    class is the runtime's torch-signature ASGD; nothing is rewritten with torch's default lr."""
    code = convert_source(_d(PAIRS["partial_rebinding_keeps_the_name"][0])).code
    assert "learning_rate=0.01" not in code and "opt = ASGD(params)" in code
    assert "from asgd_bridge.convert.runtime import ASGD" in code and "torch" not in code
