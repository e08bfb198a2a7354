"""The recurrent-cell interface every cell implements, and the layer that runs one over time.

A cell is one step ``h_t, state_t = cell(x_t, state_{t-1})``. To keep the per-step loop cheap,
the step is split in two:

* ``project_input(x)`` — everything that depends on the input only, computed for *all* time
  steps with one GEMM before the loop (``x`` is ``[T, B, I]``);
* ``step(xp_t, state)`` — the recurrent part, one fused matmul per step.

``RecurrentLayer`` picks one of three paths, all computing the same function:

1. no state hook and ``cell.fused``: the cell's native fused kernel (``native_forward``:
   ``torch._VF.lstm/gru/rnn_tanh`` for the plain cells), when it has one;
2. no state hook otherwise: the cell's hand-written whole-sequence path
   (``sequence_forward``: a custom forward + BPTT, e.g. LSTM and mLSTM), when it has one;
3. the generic loop: ``project_input`` once, then ``step`` per step under autograd, with the
   state hooks applied after every step (``cell.compile=true`` wraps ``step`` in
   ``torch.compile``; off by default: it did not pay on the CPU, docs/performance.md).

``begin_sequence`` / ``end_sequence`` bracket the loop (VC cells fold their statistics there).
The layer offers two seams for regularizers:

* ``state_hooks``: ``f(prev_state, new_state, layer) -> state`` applied after every step
  (zoneout), with ``sequence_hooks`` called when a sequence starts (its locked mask);
* ``torch.nn.utils.parametrize`` on the cell's weights, evaluated once per sequence with
  ``parametrize.cached()`` (weight norm, weight drop).
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod

import math
import re
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..reported import Reported

State = tuple[Tensor, ...]
StateHook = Callable[[State, State, "RecurrentLayer"], State]
#: per state slot, the mixing factor k of :class:`StateMix` for a whole sequence (None: not mixed)
Mix = tuple[Optional[Tensor], ...]


class StateMix(metaclass=ABCMeta):
    """A state hook (``f(prev_state, new_state, layer) -> state``) that mixes each state slot with
    its previous value, ``s_t = k_t ⊙ s_{t−1} + (1 − k_t) ⊙ ŝ_t`` (zoneout), with factors that do
    not depend on the states. Its factors can then be drawn for the whole sequence before it
    runs, so a cell whose whole-sequence kernel takes them (:attr:`Cell.takes_state_mix`) keeps
    its fast path instead of the per-step loop."""

    @abstractmethod
    def sequence_mix(self, T: int, like: Tensor, training: bool) -> Mix:
        """``k`` per state slot for the ``T`` steps about to run, each broadcastable to
        ``[T, B, H]`` (``like`` is a state tensor ``[B, H]``: dtype, device, shape), drawing any
        random factors in the order the per-step hook would draw them."""

#: the kinds of matrix a cell names (:meth:`Cell.matrix_names`), for regularizers and optimizer groups
MATRIX_KINDS = ("input", "recurrent")
RECURRENT_NAME = re.compile(r"^weight_h\w*$")
INPUT_NAME = re.compile(r"^weight_[ix]\w*$")


class FollowsTraining:
    """A module whose function moves with training (VC's λ schedule, QAT's quant delay). The
    trainer calls :meth:`set_training_progress` on every such module of the model before every
    optimizer step; every :class:`Cell` is one."""

    def set_training_progress(self, step: int, total_steps: int) -> None:
        """``step`` optimizer steps of ``total_steps`` are done; the default ignores it."""

    def progress_state(self) -> Optional[str]:
        """The name of this module's ``state_dict`` entry that keeps what the progress set (VC's
        scheduled λ, QAT's mode), so a checkpoint evaluates as saved; None: there is none, and
        ``rnnbench verify`` sets the progress from the run's step instead."""
        return None


class Cell(nn.Module, FollowsTraining, metaclass=ABCMeta):
    """Base class of all cells. Subclasses set ``num_states`` and implement the two halves."""

    num_states: int = 1  #: 1 for (h,), 2 for (h, c)
    #: the :meth:`stats` keys results.json and ``rnnbench table`` show (see :mod:`rnnbench.reported`)
    reported: tuple[Reported, ...] = ()
    #: ``rnnbench bench``'s FLOP model: (r_in, r_rec, e) — GEMM rows (in units of H) reading x
    #: and reading h (or m), and element-wise operations per hidden unit and step (forward)
    flop_model: tuple[int, int, int] = (4, 4, 10)
    #: :meth:`sequence_forward` takes ``mix`` (the :class:`StateMix` factors): zoneout keeps the fast path
    takes_state_mix: bool = False
    #: :meth:`sequence_forward`'s kernel has a compiled loop (:mod:`rnnbench.cells.kernels.native`)
    compiled_kernel: bool = False

    def __init__(self, input_size: int, hidden_size: int, fused: bool = True, compile: bool = False,
                 name: Optional[str] = None, recurrent_init: str = "default") -> None:
        super().__init__()
        if recurrent_init not in ("default", "orthogonal"):
            raise ValueError(f"recurrent_init must be default or orthogonal, not {recurrent_init!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.fused = fused
        self.compile = compile
        self.recurrent_init = recurrent_init
        self.cell_name = name or type(self).__name__.lower()

    def initialize(self) -> None:
        """What a cell's constructor calls: :meth:`reset_parameters`, then ``recurrent_init``."""
        self.reset_parameters()
        self.init_recurrent()

    def reset_parameters(self) -> None:
        """``torch.nn.RNN``'s initialisation: every parameter ~ U(−1/√H, 1/√H)."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def matrix_names(self, kind: str) -> list[str]:
        """Names of the cell's ``kind`` ('input' | 'recurrent') matrices, for the regularizers and
        ``recurrent_init``: the class attribute ``regularizer_weights = {"input": (...),
        "recurrent": (...)}`` if the cell declares it, otherwise ``torch.nn.LSTM``'s naming
        convention: a 2-D parameter directly on the cell named ``weight_h*`` (``weight_hh``,
        ``weight_hm``...) reads the previous hidden state and is *recurrent*; one named
        ``weight_i*`` / ``weight_x*`` reads the input and is *input*."""
        declared = getattr(self, "regularizer_weights", None)
        if declared is not None:
            return list(declared.get(kind, ()))
        pattern = RECURRENT_NAME if kind == "recurrent" else INPUT_NAME
        return sorted(n for n in self._own_matrix_names() if pattern.match(n))

    def _own_matrix_names(self) -> list[str]:
        """2-D parameters directly on the cell (parametrized ones by their public name)."""
        names = [n for n, p in self.named_parameters(recurse=False) if p.dim() == 2]
        if parametrize.is_parametrized(self):
            names += [n for n in self.parametrizations.keys() if getattr(self, n).dim() == 2]  # type: ignore[union-attr]
        return names

    @torch.no_grad()
    def init_recurrent(self) -> None:
        """``recurrent_init=orthogonal`` (Saxe et al. 2014): every H×H gate block of every
        recurrent matrix (:meth:`matrix_names`) drawn orthogonal, so at initialisation the
        recurrence neither shrinks nor grows the state; ``default`` keeps the cell's own init."""
        if self.recurrent_init != "orthogonal":
            return
        for w in (getattr(self, n) for n in self.matrix_names("recurrent")):
            rows, cols = w.shape
            for r in range(0, rows, cols):
                nn.init.orthogonal_(w[r:r + cols])

    @classmethod
    def input_options(cls, cell_cfg: Any, one_hot_input: bool) -> dict[str, Any]:
        """Constructor options that depend on what the cell reads (``one_hot_input``: one-hot
        symbols, e.g. a seq2seq encoder's first layer); :func:`~rnnbench.cells.stack.cell_factory`
        passes them. The default: none."""
        return {}

    # -- interface --------------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        z = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return tuple(z if i == 0 else z.clone() for i in range(self.num_states))

    @abstractmethod
    def project_input(self, x: Tensor) -> Tensor:  # [..., I] -> [..., P]
        """The input-only part of the step for every time step at once (one GEMM)."""

    @abstractmethod
    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        """One recurrent step from the projected input ``xp`` and the previous state."""

    def native_forward(self, x: Tensor, state: State) -> Optional[tuple[Tensor, State]]:
        """Run the whole sequence on a fused native kernel, or return None if not possible."""
        return None

    def own_path(self) -> Optional[str]:
        """The path this cell takes whatever :meth:`RecurrentLayer.path` would infer from its
        overrides, or None: for a wrapper that decides at run time (QAT's fake-quant step loop)."""
        return None

    def sequence_forward(self, x: Tensor, state: State, mix: Optional[Callable[[], Mix]] = None
                         ) -> Optional[tuple[Tensor, State]]:
        """A hand-written whole-sequence custom path (used when no per-step hook needs the
        loop; e.g. the LSTM's manual BPTT), or None to use the generic :meth:`step` loop. A cell
        with :attr:`takes_state_mix` is also called with ``mix``: a function that draws the
        :class:`StateMix` factors, to be called once its weights are read (the order in which the
        per-step loop draws a weight-drop mask and the zoneout masks)."""
        return None

    def extra_loss(self) -> Optional[Tensor]:
        """An auxiliary loss term accumulated during the last forward (e.g. VC's penalty)."""
        return None

    def stats(self) -> dict[str, float]:
        """Per-forward statistics to log (e.g. VC's computation fraction)."""
        return {}

    def begin_sequence(self, batch: int) -> None:
        """Called by :class:`RecurrentLayer` before it runs the step loop over a sequence."""

    def end_sequence(self) -> None:
        """Called by :class:`RecurrentLayer` after the step loop (e.g. to fold per-step stats)."""

    # -- one-step call, for tests and users ---------------------------------------------------
    def forward(self, x: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        return self.step(self.project_input(x), state)


class CellRunner(nn.Module):
    """A module that runs cells (:class:`~rnnbench.cells.stack.RNNStack`, a model that steps
    its cells itself). The trainer adds every runner's :meth:`extra_loss` to the loss and logs
    its :meth:`stats`; the cells report through their runner, which says which cells it runs."""

    def cells(self) -> list[Cell]:
        """The cells this module runs (and reports for)."""
        return []

    def extra_loss(self) -> Optional[Tensor]:
        """The cells' auxiliary losses of the last forward (e.g. VC's penalty), or None."""
        return cells_extra_loss(self.cells())

    def stats(self) -> dict[str, float]:
        """The cells' statistics since the last call (e.g. VC's compute fraction)."""
        return cells_stats(self.cells())


def cells_extra_loss(cells: list[Cell]) -> Optional[Tensor]:
    """Sum of the cells' auxiliary losses (e.g. VC's computation penalty), or None."""
    terms = [t for t in (c.extra_loss() for c in cells) if t is not None]
    return torch.stack(terms).sum() if terms else None


def cells_stats(cells: list[Cell]) -> dict[str, float]:
    """The cells' per-forward statistics, averaged over cells (e.g. VC's compute fraction)."""
    out: dict[str, list[float]] = {}
    for c in cells:
        for k, v in c.stats().items():
            out.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in out.items()}


class RecurrentLayer(nn.Module):
    """Runs a :class:`Cell` over a time-major sequence ``[T, B, I]`` in one direction."""

    def __init__(self, cell: Cell, reverse: bool = False) -> None:
        super().__init__()
        self.cell = cell
        self.reverse = reverse
        self.state_hooks: list[StateHook] = []
        #: called when a sequence starts (a locked zoneout mask is redrawn): :meth:`new_sequence`
        self.sequence_hooks: list[Callable[[], None]] = []
        self.input_hooks: list[Callable[[Tensor, "RecurrentLayer"], Tensor]] = []
        self._compiled_step = None

    def _mix_hook(self) -> Optional[StateMix]:
        """The one :class:`StateMix` hook a cell with :attr:`~Cell.takes_state_mix` runs inside
        its kernel, or None (no hook, other hooks, or a cell that does not take it)."""
        hooks = self.state_hooks
        if len(hooks) == 1 and isinstance(hooks[0], StateMix) and self.cell.takes_state_mix:
            return hooks[0]
        return None

    def path(self) -> str:
        """Which path :meth:`forward` takes: ``native`` (the fused kernel), ``sequence`` (the
        cell's hand-written whole-sequence function) or ``loop`` (``step`` per time step)."""
        cell = self.cell
        if cell.own_path() is not None:
            return cell.own_path()
        if self.state_hooks and self._mix_hook() is None or cell.compile:
            return "loop"
        if not self.state_hooks and cell.fused and type(cell).native_forward is not Cell.native_forward:
            return "native"
        return "sequence" if type(cell).sequence_forward is not Cell.sequence_forward else "loop"

    def new_sequence(self) -> None:
        """A sequence starts: run the :attr:`sequence_hooks` (every forward does; a model that
        steps the cell itself calls it)."""
        for hook in self.sequence_hooks:
            hook()

    def forward(self, x: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        self.new_sequence()
        if state is None:
            state = self.cell.init_state(x.shape[1], x.device, x.dtype)
        for hook in self.input_hooks:
            x = hook(x, self)
        with parametrize.cached():
            mix_hook = self._mix_hook()
            if not self.state_hooks or mix_hook is not None:
                xr = x.flip(0) if self.reverse else x
                out = self.cell.native_forward(xr, state) if self.cell.fused and mix_hook is None else None
                if out is None and mix_hook is None:
                    out = self.cell.sequence_forward(xr, state)
                elif out is None:
                    out = self.cell.sequence_forward(
                        xr, state, mix=lambda: mix_hook.sequence_mix(x.shape[0], state[0], self.training))
                if out is not None:
                    y, state = out
                    return (y.flip(0) if self.reverse else y), state
            return self._loop(x, state)

    def _step_fn(self):
        if not self.cell.compile:
            return self.cell.step
        if self._compiled_step is None:
            self._compiled_step = torch.compile(self.cell.step, dynamic=False)
        return self._compiled_step

    def _loop(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """The per-step path: one input GEMM for all steps, then ``cell.step`` per step.

        ``xp.unbind(0)`` (not ``xp[t]``) matters: autograd then gathers the per-step input
        gradients with one stack instead of accumulating a full ``[T, B, P]`` zero tensor per
        step (O(T^2) memory traffic, minutes at T=784). Outputs are collected in a list and
        stacked once (writing into a preallocated buffer would chain a CopySlices node per step
        under autograd, again O(T^2) in the backward); without autograd they go into one
        preallocated buffer.
        """
        cell = self.cell
        cell.begin_sequence(x.shape[1])
        xp = cell.project_input(x)  # one GEMM for every step
        step = self._step_fn()
        hooks = self.state_hooks
        T = x.shape[0]
        xs = xp.unbind(0)
        order = range(T - 1, -1, -1) if self.reverse else range(T)
        # under autograd, collect outputs and stack once (writing into a buffer would chain a
        # CopySlices node per step); without autograd, write into one preallocated buffer
        grad = torch.is_grad_enabled()
        outs: list[Tensor] = [None] * T  # type: ignore[list-item]
        y = None if grad else x.new_empty(T, x.shape[1], cell.hidden_size)
        try:
            for t in order:
                h, new_state = step(xs[t], state)
                for hook in hooks:
                    new_state = hook(state, new_state, self)
                    h = new_state[0]
                state = new_state
                if grad:
                    outs[t] = h
                else:
                    y[t] = h
            if grad:
                y = torch.stack(outs, 0) if T else x.new_zeros(0, x.shape[1], cell.hidden_size)
        finally:
            cell.end_sequence()
        return y, state


def split_state(state: Optional[Tensor | tuple], n: int) -> list[Optional[State]]:
    """Helper for stacks: a per-layer list of states from ``None`` or a list."""
    if state is None:
        return [None] * n
    return list(state)
