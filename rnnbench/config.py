"""Structured-config schemas (dataclasses) registered in Hydra's ConfigStore.

Every group option in ``conf/<group>/<name>.yaml`` starts from one of these schemas
(``defaults: [_schema_<name>, _self_]``), so a misspelled key or a wrong type fails when the
config is composed, not halfway through a run. A cell's schema lives beside its class (each
``rnnbench/cells/*.py`` ends with its :func:`register_schema`), the others here. Also the Hydra plumbing the rest of the package
shares: where the config tree is (:data:`CONF_DIR`) and :func:`instantiate`.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from .errors import ConfigError, RnnbenchError

#: the config tree (``conf/``, reached through the package's ``conf`` link); conf/README.md maps it
CONF_DIR = Path(__file__).resolve().parent / "conf"


# ----------------------------------------------------------------------------- top level
@dataclass
class DataConf:
    root: str = "data"  #: where datasets live (MNIST/, FashionMNIST/, PTB/, tinyshakespeare/)
    download: bool = False  #: fetch missing files from the canonical source


@dataclass
class TrainConf:
    epochs: int = 10
    max_steps: Optional[int] = None  #: stop after this many optimizer steps (smoke runs)
    batch_size: int = 64
    eval_batch_size: int = 1000
    resume: Optional[str] = None  #: a run directory to continue from its checkpoints/last.pt
    verify: bool = False  #: run ``rnnbench verify`` on the finished run
    skip_finished: bool = False  #: leave a run whose results.json says ok untouched
    checkpoint_every: int = 200  #: also write last.pt every N steps inside an epoch (0: epoch ends only)
    log_every: int = 20  #: TensorBoard step-scalar interval
    progress: bool = True  #: tqdm progress bars
    table: bool = True  #: a finished multirun writes ``rnnbench table``'s files into its sweep dir and logs the table
    #: also evaluate on valid every N optimizer steps inside an epoch (0: at epoch ends only): a
    #: metrics.jsonl row pair at the fractional epoch, TensorBoard valid_step/*, best.pt when best
    eval_every: int = 0
    eval_train: bool = False  #: also evaluate (acc etc.) on a sample of the training split each epoch
    max_eval_batches: Optional[int] = None  #: cap evaluation batches (smoke runs)
    num_threads: Optional[int] = None  #: torch.set_num_threads (None: torch's default)
    deterministic: bool = False  #: torch.use_deterministic_algorithms (slower on CUDA)
    #: CPU: treat subnormal floats as zero (torch.set_flush_denormal). Saturated gates and Adam
    #: moments decaying toward 0 produce subnormals, and x86 arithmetic on them is ~100x slower
    flush_denormal: bool = True


@dataclass
class Config:
    seed: int = 0
    device: str = "auto"  #: auto | cpu | cuda
    name: str = "run"
    data: DataConf = field(default_factory=DataConf)
    train: TrainConf = field(default_factory=TrainConf)
    dataset: Any = MISSING
    model: Any = MISSING
    cell: Any = MISSING
    optimizer: Any = MISSING
    regularizer: Any = field(default_factory=dict)
    experiment: Optional["ExperimentConf"] = None  #: set by conf/experiment/<name>.yaml
    #: which conf/tuned/<dataset>_<cell>.yaml was applied (each sets its own name), None: none
    tuned: Optional[str] = None


# ----------------------------------------------------------------------------- experiments
@dataclass
class FigureConf:
    """One figure the article (or the paper it cites) reports for one variant."""
    match: Dict[str, Any] = field(default_factory=dict)  #: config values picking the variant's runs
    value: float = MISSING  #: in the metric's stored units (accuracy as a fraction)
    source: str = MISSING  #: paper, table or section
    note: str = ""  #: the paper's set-up in a few words (size, regularizer settings)


@dataclass
class ComparisonConf:
    """One variant-vs-baseline difference the claim is about."""
    variant: Dict[str, Any] = MISSING  #: config values picking the variant's runs
    baseline: Optional[Dict[str, Any]] = None  #: None: the experiment's ``baseline``


@dataclass
class ClaimConf:
    """What the article says the variant does, in a form ``rnnbench table`` can test: the
    difference of means (variant - baseline) of ``split``/``metric`` over seeds, with a 95 % Welch
    interval; reproduced when the interval lies on the claimed side of 0."""
    kind: str = MISSING  #: regularizer (about over-fitting) | cell (what a cell reaches) | model | method
    statement: str = MISSING  #: the claim in words
    source: str = MISSING  #: where the article / paper makes it
    metric: str = MISSING  #: a results.json metric name: bpc, acc, seq_acc, loss
    split: str = "test"  #: test | valid (the best evaluation's)
    direction: str = MISSING  #: lower | higher: the variant's metric against the baseline's
    #: a non-inferiority claim ("close to", "comparable"): the variant may be this much worse, in the
    #: metric's units; the interval is then judged against -margin (higher) / +margin (lower), not 0
    margin: float = 0.0
    compare: List[ComparisonConf] = MISSING
    figures: List[FigureConf] = field(default_factory=list)


@dataclass
class ExperimentConf:
    name: str = MISSING
    article: str = MISSING  #: the source article (../shared/seeds numbering) and its subject
    baseline: Dict[str, Any] = field(default_factory=dict)  #: config values picking the baseline's runs
    claim: ClaimConf = MISSING
    #: cell name -> model.hidden_size, for comparisons at matched parameter counts; a scale's file
    #: (conf/experiment_scale/<experiment>/<scale>.yaml) sets them and points model.hidden_size here
    hidden_sizes: Dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- datasets
@dataclass
class DatasetConf:
    _target_: str = MISSING
    name: str = MISSING
    limit: Optional[int] = None  #: use only the first N training examples


@dataclass
class AdditionConf(DatasetConf):
    _target_: str = "rnnbench.tasks.addition.AdditionTask"
    name: str = "addition"
    n_train: int = 50000
    n_valid: int = 5000
    n_test: int = 5000
    max_value: int = 999
    reverse: bool = False  #: feed the question reversed (Keras addition example)
    data_seed: Optional[int] = None  #: generator seed (None: the run's seed)


@dataclass
class ImageSeqConf(DatasetConf):
    _target_: str = "rnnbench.tasks.mnist.ImageSequenceTask"
    name: str = "mnist_row"
    source: str = "mnist"  #: mnist | fashion
    layout: str = "row"  #: row (28x28) | pixel (784x1)
    permute: bool = False  #: one fixed pixel permutation (pmnist)
    permutation_seed: int = 92916
    n_valid: int = 5000  #: held out from the 60k training images for validation


@dataclass
class CharLMConf(DatasetConf):
    _target_: str = "rnnbench.tasks.text.CharLMTask"
    name: str = "ptb_char"
    corpus: str = "ptb"  #: ptb | shakespeare
    bptt: int = 100  #: truncated-BPTT length
    eval_batch_size: int = 50


# ----------------------------------------------------------------------------- models
@dataclass
class ModelConf:
    _target_: str = MISSING
    name: str = MISSING
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0  #: plain dropout between stacked layers


@dataclass
class ClassifierConf(ModelConf):
    _target_: str = "rnnbench.models.classifier.Classifier"
    name: str = "classifier"
    bidirectional: bool = False


@dataclass
class Seq2SeqConf(ModelConf):
    _target_: str = "rnnbench.models.seq2seq.Seq2Seq"
    name: str = "seq2seq"


@dataclass
class AttentionSeq2SeqConf(ModelConf):
    _target_: str = "rnnbench.models.attention.AttentionSeq2Seq"
    name: str = "attention_seq2seq"
    attention: str = "window"  #: window (TF AttentionCellWrapper) | additive (Bahdanau)
    attn_length: int = 7  #: window: how many past wrapper outputs are attended (article: 7)
    attn_size: Optional[int] = None  #: window read-out / output size (None: hidden_size, as TF)
    attn_vec_size: Optional[int] = None  #: width of the additive score's tanh layer (None: attn_size)


@dataclass
class LMConf(ModelConf):
    _target_: str = "rnnbench.models.lm.LanguageModel"
    name: str = "lm"
    embedding_size: int = 128
    tie_weights: bool = False


# ----------------------------------------------------------------------------- cells
@dataclass
class CellConf:
    _target_: str = MISSING
    name: str = MISSING
    fused: bool = True  #: use the native fused kernel when nothing needs the per-step loop
    compile: bool = False  #: torch.compile the custom step (no gain measured on the CPU: docs/performance.md)
    #: default (the cell's own init) | orthogonal: each H×H gate block of the recurrent matrices orthogonal
    recurrent_init: str = "default"



# ----------------------------------------------------------------------------- optimizers
@dataclass
class ClipConf:
    kind: str = "global"  #: per_tensor (article 001's clip_by_norm on each gradient) | global
    max_norm: float = 1.0


@dataclass
class ScheduleConf:
    kind: str = "none"  #: none | step | cosine | plateau
    step_size: int = 10  #: step: epochs between decays
    gamma: float = 0.5  #: step / plateau: decay factor
    patience: int = 2  #: plateau: epochs without improvement
    min_lr: float = 0.0


@dataclass
class LrScaleConf:
    """Learning-rate multipliers by parameter role (train.optim.param_groups): every cell's
    recurrent / input matrices train at lr × scale, everything else at lr."""
    recurrent: float = 1.0
    input: float = 1.0


@dataclass
class OptimizerConf:
    _target_: str = MISSING
    name: str = MISSING
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip: Optional[Any] = None  #: null | {kind: per_tensor|global, max_norm: x} (checked by train.optim)
    schedule: ScheduleConf = field(default_factory=ScheduleConf)
    lr_scale: LrScaleConf = field(default_factory=lambda: LrScaleConf())


@dataclass
class AdamConf(OptimizerConf):
    _target_: str = "torch.optim.Adam"
    name: str = "adam"
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8


@dataclass
class AdamWConf(AdamConf):
    _target_: str = "torch.optim.AdamW"
    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class SGDConf(OptimizerConf):
    _target_: str = "torch.optim.SGD"
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class RMSpropConf(OptimizerConf):
    _target_: str = "torch.optim.RMSprop"
    name: str = "rmsprop"
    alpha: float = 0.99
    momentum: float = 0.0
    eps: float = 1e-8


# ----------------------------------------------------------------------------- regularizers
# Each conf/regularizer/<name>.yaml is ``# @package regularizer.<name>`` (Hydra 1.3 does not expand
# ``_group_._name_``), so regularizer=[a,b] composes ``regularizer: {a: {...}, b: {...}}``.
@dataclass
class RegularizerConf:
    _target_: str = MISSING


@dataclass
class WeightNormConf(RegularizerConf):
    _target_: str = "rnnbench.regularizers.weight_norm.WeightNorm"
    matrices: list = field(default_factory=lambda: ["input", "recurrent"])  #: input | recurrent
    init: str = "keep"  #: keep | article (v ~ truncN(0, init_std), g = init_g, b = 0)
    init_std: float = 0.05
    init_g: float = 0.1
    zero_bias: bool = True  #: with init=article: b = 0


@dataclass
class WeightDropConf(RegularizerConf):
    _target_: str = "rnnbench.regularizers.weight_drop.WeightDrop"
    p: float = 0.5  #: DropConnect probability on recurrent weights
    use_vd: bool = False  #: keep one mask until after_step resamples it (article 002)
    matrices: list = field(default_factory=lambda: ["recurrent"])


@dataclass
class VariationalDropoutConf(RegularizerConf):
    _target_: str = "rnnbench.regularizers.variational_dropout.VariationalDropout"
    input: float = 0.0  #: locked dropout on the first layer's input
    hidden: float = 0.0  #: between stacked layers
    output: float = 0.0  #: on the stack's output
    embedding: float = 0.0  #: drop whole embedding rows (LM)
    embedding_if_present: bool = False  #: skip embedding dropout on models without nn.Embedding


@dataclass
class ZoneoutConf(RegularizerConf):
    _target_: str = "rnnbench.regularizers.zoneout.Zoneout"
    z_h: float = 0.05
    z_c: float = 0.5
    locked: bool = False  #: one mask per sequence instead of per step


@dataclass
class AWDConf(RegularizerConf):
    _target_: str = "rnnbench.regularizers.awd.AWD"
    wdrop: float = 0.5
    dropouti: float = 0.65
    dropouth: float = 0.3
    dropout: float = 0.4
    dropoute: float = 0.1
    use_vd: bool = False


@dataclass
class QATConf(RegularizerConf):
    _target_: str = "rnnbench.regularizers.qat.QAT"
    quant_delay: int = 0  #: optimizer steps of float training before fake quantisation
    observer_decay: float = 0.99  #: EMA decay of the activation range observers
    linear: bool = True  #: also quantise nn.Linear heads


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"addition": AdditionConf, "image_seq": ImageSeqConf, "char_lm": CharLMConf},
    "model": {
        "classifier": ClassifierConf,
        "seq2seq": Seq2SeqConf,
        "attention_seq2seq": AttentionSeq2SeqConf,
        "lm": LMConf,
    },
    # filled by the cell modules themselves (register_schema in rnnbench/cells/*.py): a new cell
    # declares its options beside its class
    "cell": {},
    "optimizer": {"adam": AdamConf, "adamw": AdamWConf, "sgd": SGDConf, "rmsprop": RMSpropConf},
    "regularizer": {"weight_norm": WeightNormConf, "weight_drop": WeightDropConf,
                    "variational_dropout": VariationalDropoutConf, "zoneout": ZoneoutConf, "awd": AWDConf,
                    "qat": QATConf},
}


# ----------------------------------------------------------------------------- allowed values
@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric setting: finite, from ``lo`` to ``hi`` (None: no bound;
    an open end excludes the bound itself)."""
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def allows(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def describe(self, integer: bool) -> str:
        what = "an integer" if integer else "a finite number"
        if self.lo is not None and self.hi is not None:
            return f"{what} in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{what} {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return what


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


COUNT = Range(1)  #: sizes, layers, lengths, epochs, steps: at least one
NONNEG = Range(0)  #: seeds, intervals where 0 means "off", delays, decays
POSITIVE = Range(0, lo_open=True)  #: learning rates, scales, norms, epsilons
PROB = Range(0, 1, hi_open=True)  #: dropout-like probabilities: 1 would drop everything
UNIT = Range(0, 1)
REAL = Range()  #: any finite number (biases, initial values)

#: Every numeric field of every schema, with what it allows (a subclass inherits its parents'
#: entries); a schema type as the value: the field holds a node of that schema when it is set.
#: tests/test_config.py fails for a numeric field that is missing here. check_ranges applies it.
RANGES: dict[type, dict[str, Union[Range, type]]] = {
    Config: {"seed": NONNEG},
    TrainConf: {"epochs": COUNT, "max_steps": COUNT, "batch_size": COUNT, "eval_batch_size": COUNT,
                "checkpoint_every": NONNEG, "log_every": COUNT, "eval_every": NONNEG, "max_eval_batches": COUNT,
                "num_threads": COUNT},
    ClaimConf: {"margin": NONNEG},
    FigureConf: {"value": REAL},
    DatasetConf: {"limit": COUNT},
    AdditionConf: {"n_train": COUNT, "n_valid": COUNT, "n_test": COUNT, "max_value": COUNT, "data_seed": NONNEG},
    # the 60k MNIST / Fashion-MNIST training images are split into train and valid
    ImageSeqConf: {"permutation_seed": NONNEG, "n_valid": Range(1, 59999)},
    CharLMConf: {"bptt": COUNT, "eval_batch_size": COUNT},
    ModelConf: {"hidden_size": COUNT, "num_layers": COUNT, "dropout": PROB},
    AttentionSeq2SeqConf: {"attn_length": COUNT, "attn_size": COUNT, "attn_vec_size": COUNT},
    LMConf: {"embedding_size": COUNT},
    ClipConf: {"max_norm": POSITIVE},
    # ReduceLROnPlateau needs a factor below 1; a decay of 0 would zero the learning rate
    ScheduleConf: {"step_size": COUNT, "gamma": Range(0, 1, True, True), "patience": NONNEG, "min_lr": NONNEG},
    LrScaleConf: {"recurrent": POSITIVE, "input": POSITIVE},
    OptimizerConf: {"lr": POSITIVE, "weight_decay": NONNEG, "clip": ClipConf},
    AdamConf: {"betas": PROB, "eps": POSITIVE},
    SGDConf: {"momentum": PROB},
    RMSpropConf: {"alpha": PROB, "momentum": PROB, "eps": POSITIVE},
    WeightNormConf: {"init_std": POSITIVE, "init_g": POSITIVE},
    WeightDropConf: {"p": PROB},
    VariationalDropoutConf: {"input": PROB, "hidden": PROB, "output": PROB, "embedding": PROB},
    ZoneoutConf: {"z_h": PROB, "z_c": PROB},
    AWDConf: {"wdrop": PROB, "dropouti": PROB, "dropouth": PROB, "dropout": PROB, "dropoute": PROB},
    QATConf: {"quant_delay": NONNEG, "observer_decay": PROB},
}


def range_of(schema: type, name: str) -> Optional[Union[Range, type]]:
    """The entry for field ``name`` of ``schema`` (or of the nearest parent that has one)."""
    for cls in schema.__mro__:
        if name in RANGES.get(cls, {}):
            return RANGES[cls][name]
    return None


def check_ranges(cfg: Any) -> None:
    """Raise one ConfigError naming the key, the value and what is allowed for the first numeric
    setting of the composed config outside its :data:`RANGES` entry."""

    for key, value, rule, integer in _numeric_settings(cfg, Config, ""):
        values = list(value) if isinstance(value, ListConfig) else [value]
        if not all(rule.allows(v) for v in values):
            shown = "[" + ", ".join(str(v) for v in values) + "]" if isinstance(value, ListConfig) else value
            each = "each must be" if isinstance(value, ListConfig) else "must be"
            raise ConfigError(f"{key}={shown}: {each} {rule.describe(integer)}")


def _numeric_settings(node: DictConfig, schema: type, prefix: str):
    """``(key, value, Range, integer)`` of every set numeric field below ``node``."""
    for f in dataclasses.fields(schema):
        if f.name not in node or OmegaConf.is_missing(node, f.name):
            continue
        key, value, rule = prefix + f.name, node[f.name], range_of(schema, f.name)
        if isinstance(rule, Range) and value is not None:
            yield key, value, rule, "int" in str(f.type)
        elif isinstance(rule, type) and isinstance(value, DictConfig):
            yield from _numeric_settings(value, rule, key + ".")
        else:
            yield from _children(value, key)


def _children(value: Any, key: str):
    # group options (dataset, model, ..., each regularizer) keep their schema type once composed
    if isinstance(value, DictConfig):
        schema = OmegaConf.get_type(value)
        if dataclasses.is_dataclass(schema):
            yield from _numeric_settings(value, schema, key + ".")
        else:
            for k in value:
                if not OmegaConf.is_missing(value, k):
                    yield from _children(value[k], f"{key}.{k}")
    elif isinstance(value, ListConfig):
        for i, v in enumerate(value):
            yield from _children(v, f"{key}[{i}]")


def register_schema(group: str, name: str, node: type, ranges: Optional[dict[str, Union[Range, type]]] = None) -> None:
    """Register one option schema as ``<group>/_schema_<name>`` (yaml files list it in defaults),
    with the allowed values of its own numeric fields (its :data:`RANGES` entry). A cell module
    calls this beside its class, so a new cell's options live in the cell's own file."""
    SCHEMAS.setdefault(group, {})[name] = node
    if ranges:
        RANGES[node] = dict(ranges)
    ConfigStore.instance().store(group=group, name=f"_schema_{name}", node=node)


def register_configs() -> None:
    """Store the top-level schema and every group-option schema (idempotent). The cell package is
    imported first: each cell module registers its own schema (:func:`register_schema`)."""
    importlib.import_module("rnnbench.cells")
    cs = ConfigStore.instance()
    cs.store(name="_schema_config", node=Config)
    for group, options in SCHEMAS.items():
        for name, node in options.items():
            cs.store(group=group, name=f"_schema_{name}", node=node)


# ----------------------------------------------------------------------------- instantiation
def instantiate(cfg, *args, **kwargs):
    """``hydra.utils.instantiate`` that lets our own errors through unwrapped (one-line messages)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as _instantiate

    try:
        return _instantiate(cfg, *args, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, RnnbenchError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        bad = _bad_setting(e)
        if bad is not None:
            raise bad from None
        raise


def _bad_setting(e: BaseException):
    """A ValueError from a configured constructor (a cell refusing ``threshold=...``, say) is a bad
    setting of that group option: a ConfigError naming the group, not an internal error."""
    import re

    target, cause = None, e
    while cause is not None and not isinstance(cause, ValueError):
        m = re.search(r"target '([\w.]+)'", str(cause).splitlines()[0] if str(cause) else "")
        target = m.group(1) if m else target
        cause = cause.__cause__
    if cause is None:
        return None
    group = next((g for g, opts in SCHEMAS.items() for s in opts.values()
                  if getattr(s, "_target_", None) == target), target or "config")
    return ConfigError(f"{group}: {cause}")
