"""Per-example LoGra gradient sketches from any PyTorch model, written to a GradSketch store.

For one example b and one linear layer with input activations ``a_t`` (``n_in``) and output
gradients ``δ_t`` (``n_out``) at tokens ``t``, the layer's weight gradient is
``G_b = Σ_t δ_t a_tᵀ`` and its LoGra sketch is (Spec/projection.md §4)::

    sketch_b = Σ_t (P_out δ_t) ⊗ (P_in a_t) = (Δ_b P_outᵀ)ᵀ (A_b P_inᵀ)   (k_out × k_in, row-major)

which equals ``(P_out ⊗ P_in) vec(G_b)``. The collector projects the activations in a forward
hook (it keeps ``A P_inᵀ``, ``B × T × k_in``, never ``A``) and the output gradients in a tensor
hook on the layer's output, so the per-example gradient is never formed — except with
``precondition=optimizer``, where the Adam transform is elementwise on ``G_b`` and the collector
must form ``G_b`` (``B × n_out × n_in`` per layer) before projecting it.

The factors come from :func:`gradsketch.projection.rademacher`, i.e. the engine's own
``gs_projection_rademacher``: one implementation of the Spec's Philox definition. The set
records the full multi-parameter projection definition (Spec/projection.md §5), so
``select --delta`` / ``query --delta`` of a stored ``state_dict`` delta project the delta with the
same matrices.

Biases are not sketched: the layout names only the weights (``NAME.weight``), and a delta's
other tensors are ignored when it is projected.

Example::

    with LoGraCollector(model, store, "train", seed=0, k=(16, 16)) as collector:
        for ids, batch in loader:
            with collector.batch(ids, mask=batch["attention_mask"]):
                loss = loss_fn(model(batch))      # summed over the batch's examples
                loss.backward()
    # one version committed on success (one for all ranks under torchrun); aborted on error
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np
import torch
from torch import nn

from . import distributed as _distributed
from . import projection as _projection
from .errors import GradSketchError, InvalidInputError, InvalidStateError

__all__ = ["LoGraCollector", "SketchedModule", "sketchable_modules"]

KSpec = Union[tuple[int, int], Mapping[str, tuple[int, int]]]
ModuleSelection = Union[None, Sequence[str], Callable[[str, nn.Module], bool]]

_COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_STORED_DTYPES = {"float16": np.float16, "float32": np.float32}


def _is_conv1d(module: nn.Module) -> bool:
    """Hugging Face ``Conv1D`` (GPT-2 style): ``y = x W + b`` with ``W`` of shape ``[nx, nf]``.

    Recognised by class name so that ``transformers`` need not be installed.
    """
    weight = getattr(module, "weight", None)
    return type(module).__name__ == "Conv1D" and isinstance(weight, torch.Tensor) and weight.dim() == 2


def sketchable_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Linear`` and Hugging Face ``Conv1D`` of ``model`` in ``named_modules`` order."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) or _is_conv1d(module)]


@dataclass(frozen=True)
class SketchedModule:
    """One sketched layer: its weight's ``state_dict`` key, the weight's own shape and k.

    ``shape`` is the layout shape recorded in the projection definition. For ``nn.Linear`` it is
    ``[n_out, n_in]``; for ``Conv1D`` it is ``[nx, nf] = [n_in, n_out]``, so the first-dimension
    factor (stream ``NAME/out``, ``k_out × shape[0]``) applies to the activations and the
    second (``NAME/in``, ``k_in × shape[1]``) to the output gradients. Either way the sketch is
    ``(P_out ⊗ P_in) vec(∂L/∂W)`` for the tensor as stored in the ``state_dict``.
    """

    module_name: str
    parameter: str
    shape: tuple[int, int]
    k_out: int
    k_in: int
    transposed: bool

    @property
    def width(self) -> int:
        """The module's block of the sketch row: ``k_out · k_in``."""
        return self.k_out * self.k_in

    @property
    def activation_width(self) -> int:
        """Width of the module's input activations."""
        return self.shape[0] if self.transposed else self.shape[1]

    @property
    def gradient_width(self) -> int:
        """Width of the module's output gradients."""
        return self.shape[1] if self.transposed else self.shape[0]

    def layout_entry(self) -> dict[str, Any]:
        """This parameter's entry of the projection definition's layout (Spec/projection.md §5)."""
        return _projection.kronecker_layout(self.parameter, self.shape, self.k_out, self.k_in)


@dataclass
class _ModuleBatch:
    """What one module has accumulated in the current batch."""

    sketch: torch.Tensor | None = None        # [B, k_out, k_in] (or [B, *shape] gradients when preconditioning)
    forwards: int = 0
    backwards: int = 0


@dataclass
class _Batch:
    ids: list[str] | None
    size: int | None
    mask: torch.Tensor | None
    labels: Sequence[str] | None
    metadata: Any
    modules: dict[str, _ModuleBatch] = field(default_factory=dict)
    open: bool = True


class LoGraCollector:
    """Collects per-example LoGra sketches of a model's linear layers into sketch set ``set``.

    Args:
        model: the model; hooks are attached on ``__enter__`` and removed on ``__exit__``.
        store: an open :class:`gradsketch.Store` (every rank opens its own under torchrun).
        set: the sketch set to append to (created on first commit).
        seed: the projection seed (unsigned 64-bit).
        k: ``(k_out, k_in)`` for every module, or a mapping from module name or weight key to
            ``(k_out, k_in)``. A side larger than the layer's dimension is clamped to it, as
            ``gradsketch project --side`` does; the clamped values are what the definition records.
        modules: ``None`` (every ``nn.Linear`` and ``Conv1D``; with a mapping ``k``, the modules it
            names), a list of module names or weight keys, or a predicate ``(name, module) -> bool``.
        loss_reduction: ``"sum"`` if the loss is summed over the batch's examples, ``"mean"`` if it
            is averaged over them: output gradients are then multiplied by the batch size, so
            each row is the gradient of that example's own loss either way.
        compute_dtype: dtype of the projections (activations, gradients and factors are cast to
            it); the per-example product over tokens is accumulated in float32 (float64 when
            ``compute_dtype`` is float64).
        stored_dtype: ``"float16"`` or ``"float32"``, the set's row dtype.
        precondition: ``None``, or an Adam/AdamW optimizer whose state (``exp_avg``,
            ``exp_avg_sq``) preconditions each per-example gradient as LESS does:
            ``m' = β1 m + (1−β1) g``, ``v' = β2 v + (1−β2) g²``, ``feature = m' / sqrt(v' + ε)``
            (no bias correction, ε inside the square root), with β1, β2 and ε of the parameter's
            optimizer group. This forms each per-example gradient, in float32 (float64 with a
            float64 ``compute_dtype``) whatever ``compute_dtype`` says.
        attributes: extra set attributes (e.g. ``{"tensor_set": "base"}``).
        detail: the version's detail text.
    """

    def __init__(self, model: nn.Module, store: Any, set: str, *, seed: int, k: KSpec = (16, 16),
                 modules: ModuleSelection = None, loss_reduction: str = "sum",
                 compute_dtype: torch.dtype = torch.float32, stored_dtype: str = "float16",
                 precondition: torch.optim.Optimizer | None = None,
                 attributes: Mapping[str, Any] | None = None, detail: str | None = None) -> None:
        if not isinstance(seed, int) or not 0 <= seed < 1 << 64:
            raise InvalidInputError(f"seed must be an integer in [0, 2^64), found {seed!r}")
        if loss_reduction not in ("sum", "mean"):
            raise InvalidInputError(f"loss_reduction must be 'sum' or 'mean', found {loss_reduction!r}")
        if compute_dtype not in _COMPUTE_DTYPES:
            raise InvalidInputError(f"compute_dtype must be torch.float32, float16, bfloat16 or float64, found {compute_dtype}")
        if stored_dtype not in _STORED_DTYPES:
            raise InvalidInputError(f"stored_dtype must be 'float16' or 'float32', found {stored_dtype!r}")
        self.model = model
        self.store = store
        self.set = set
        self.seed = seed
        self.loss_reduction = loss_reduction
        self.compute_dtype = compute_dtype
        self.stored_dtype = stored_dtype
        self.precondition = precondition
        self.detail = detail
        self._accumulate_dtype = torch.float64 if compute_dtype == torch.float64 else torch.float32
        self._selected = self._select_modules(model, k, modules)
        self.layout: list[SketchedModule] = [entry for entry, _ in self._selected]
        self._weights = {entry.parameter: module.weight for entry, module in self._selected}
        self.definition: dict[str, Any] = _projection.definition(
            seed, [entry.layout_entry() for entry in self.layout])
        self.attributes: dict[str, Any] = {
            "gradient_kind": "adam-preconditioned-loss-gradient" if precondition is not None else "per-example-loss-gradient",
            "collector": {"method": "logra", "loss_reduction": loss_reduction,
                          "compute_dtype": str(compute_dtype).removeprefix("torch.")}}
        self.attributes.update(attributes or {})
        self._factors: dict[tuple[str, int, int], torch.Tensor] = {}
        self._cast_factors: dict[tuple[str, int, int, torch.device, torch.dtype], torch.Tensor] = {}
        self._handles: list[Any] = []
        self._session: Any = None
        self._batch: _Batch | None = None
        self._counter = 0
        self.rows_written = 0
        self.version: int | None = None
        self.rank = _distributed.rank()

    # ----- configuration -------------------------------------------------------------------

    @staticmethod
    def _select_modules(model: nn.Module, k: KSpec, modules: ModuleSelection) -> list[tuple[SketchedModule, nn.Module]]:
        candidates = sketchable_modules(model)
        by_name = {name: module for name, module in candidates}
        weight_key = {name: (f"{name}.weight" if name else "weight") for name, _ in candidates}
        by_key = {key: name for name, key in weight_key.items()}

        def resolve(label: str) -> str:
            if label in by_name:
                return label
            if label in by_key:
                return by_key[label]
            raise InvalidInputError(f"module {label!r} is not an nn.Linear or Conv1D of the model: expected one of "
                                    f"{sorted(by_name)[:8]}{' ...' if len(by_name) > 8 else ''}")

        if isinstance(k, Mapping):
            per_module = {resolve(label): tuple(value) for label, value in k.items()}
        else:
            per_module = None
        if modules is None:
            chosen = [name for name, _ in candidates if per_module is None or name in per_module]
        elif callable(modules):
            chosen = [name for name, module in candidates if modules(name, module)]
        else:
            wanted = {resolve(label) for label in modules}
            chosen = [name for name, _ in candidates if name in wanted]
        if not chosen:
            raise InvalidInputError("no module to sketch: the model has no selected nn.Linear or Conv1D")
        selected = []
        for name in chosen:
            module = by_name[name]
            if per_module is not None:
                if name not in per_module:
                    raise InvalidInputError(f"k names no (k_out, k_in) for module {name!r}")
                sides = per_module[name]
            else:
                sides = tuple(k)
            if len(sides) != 2 or not all(isinstance(s, int) and s >= 1 for s in sides):
                raise InvalidInputError(f"k for module {name!r} must be two positive integers (k_out, k_in), found {sides!r}")
            shape = tuple(int(d) for d in module.weight.shape)
            # Clamped like `gradsketch project --side`: a side never exceeds its dimension.
            entry = SketchedModule(module_name=name, parameter=weight_key[name], shape=shape,
                                   k_out=min(sides[0], shape[0]), k_in=min(sides[1], shape[1]),
                                   transposed=_is_conv1d(module))
            selected.append((entry, module))
        return selected

    @property
    def k(self) -> int:
        """Width of a row: the sum of the modules' ``k_out · k_in`` in layout order."""
        return sum(entry.width for entry in self.layout)

    # ----- factors ---------------------------------------------------------------------------

    def _factor(self, stream: str, rows: int, cols: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``rows × cols`` Rademacher factor of ``stream`` from the engine, cast for ``device``/``dtype``."""
        key = (stream, rows, cols, device, dtype)
        cached = self._cast_factors.get(key)
        if cached is None:
            base = self._factors.get((stream, rows, cols))
            if base is None:
                base = torch.from_numpy(np.ascontiguousarray(_projection.rademacher(self.seed, stream, rows, cols)))
                self._factors[(stream, rows, cols)] = base
            cached = base.to(device=device, dtype=dtype)
            self._cast_factors[key] = cached
        return cached

    def _out_factor(self, entry: SketchedModule, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return self._factor(entry.parameter + "/out", entry.k_out, entry.shape[0], device, dtype)

    def _in_factor(self, entry: SketchedModule, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return self._factor(entry.parameter + "/in", entry.k_in, entry.shape[1], device, dtype)

    # ----- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "LoGraCollector":
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(success=exc_type is None, reason=None if exc_type is None else f"{exc_type.__name__}: {exc}")

    def start(self) -> None:
        """Opens the append session and attaches the hooks."""
        if self._session is not None:
            raise InvalidStateError("the collector is already started")
        self._session = self.store.append_session(self.set, dtype=self.stored_dtype, projection=self.definition,
                                                  attributes=self.attributes)
        for entry, module in self._selected:
            self._handles.append(module.register_forward_hook(self._forward_hook(entry)))

    def finish(self, success: bool = True, reason: str | None = None) -> int | None:
        """Removes the hooks and commits the rows as one version (``success``) or aborts them.

        Under torchrun (world size > 1) every rank must call it: each rank prepares its session
        and rank 0 commits all of them as one version (:mod:`gradsketch.distributed`); when a
        rank fails (``success=False``, ``reason`` saying why) no rank commits, the other ranks
        raise and this one returns ``None`` (its own error is the one to report).

        Returns:
            The committed version, or ``None`` when aborted (or, in one process, when no batch
            was collected).
        """
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        session, self._session = self._session, None
        if session is None:
            return None
        detail = self.detail or f"LoGra sketches of {len(self.layout)} modules, seed {self.seed}"
        if _distributed.is_distributed():
            try:
                self.version = _distributed.commit_across_ranks(self.store, session, success=success, reason=reason,
                                                                detail=detail)
            except GradSketchError:
                if success:
                    raise
                return None
            return self.version
        try:
            if not success or self.rows_written == 0:     # nothing to publish: no empty version
                session.abort()
                return None
            self.version = session.commit(detail)
            return self.version
        finally:
            session.close()

    # ----- batches ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self, ids: Sequence[str] | None = None, *, mask: torch.Tensor | None = None,
              labels: Sequence[str] | None = None, metadata: Any = None) -> Iterator["LoGraCollector"]:
        """One batch: run the forward pass and ``loss.backward()`` inside it.

        Args:
            ids: one id per example, or ``None`` to generate ``"<rank>-<counter>"``.
            mask: ``[B, T]`` padding mask (nonzero keeps a token); masked tokens add nothing.
            labels: optional label per example.
            metadata: optional metadata per example (list of dict or str), passed to the session.

        On leaving the block the batch's rows are appended to the session (streaming: one batch
        is held in memory). A selected module that saw no forward pass or no gradient in the
        batch raises :class:`InvalidStateError`.
        """
        if self._session is None:
            raise InvalidStateError("collector.batch(...) needs a started collector: use `with LoGraCollector(...) as collector`")
        if self._batch is not None:
            raise InvalidStateError("collector.batch(...) blocks cannot be nested")
        id_list = None if ids is None else [str(i) for i in ids]
        batch = _Batch(ids=id_list, size=None if id_list is None else len(id_list),
                       mask=None if mask is None else mask.detach(), labels=labels, metadata=metadata)
        if batch.mask is not None and batch.size is not None and batch.mask.shape[0] != batch.size:
            raise InvalidInputError(f"mask has {batch.mask.shape[0]} rows but the batch has {batch.size} ids")
        self._batch = batch
        try:
            yield self
            rows = self._finish_batch(batch)
        finally:
            batch.open = False
            self._batch = None
        self._append(batch, rows)

    def _check_size(self, batch: _Batch, entry: SketchedModule, examples: int) -> None:
        if batch.size is None:
            batch.size = examples
        elif examples != batch.size:
            raise InvalidInputError(f"module {entry.module_name} saw a batch of {examples} examples but the batch has "
                                    f"{batch.size} {'ids' if batch.ids is not None else 'examples elsewhere'}")

    def _forward_hook(self, entry: SketchedModule) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            batch = self._batch
            if batch is None or not isinstance(output, torch.Tensor) or not output.requires_grad:
                return
            x = inputs[0].detach()
            self._check_size(batch, entry, x.shape[0])
            x = x.reshape(x.shape[0], -1, x.shape[-1])                 # [B, T, n]
            mask = self._token_mask(batch, entry, x.shape[1])
            state = batch.modules.setdefault(entry.parameter, _ModuleBatch())
            state.forwards += 1
            if self.precondition is not None:
                kept = x.to(self._accumulate_dtype)
                if mask is not None:
                    kept = kept * mask.to(kept.dtype)[..., None]
            else:
                factor = (self._out_factor if entry.transposed else self._in_factor)(entry, x.device, self.compute_dtype)
                kept = torch.matmul(x.to(self.compute_dtype), factor.T)   # A · P_actᵀ, [B, T, k]
                if mask is not None:
                    kept = kept * mask.to(kept.dtype)[..., None]
            output.register_hook(self._gradient_hook(entry, batch, state, kept))
        return hook

    @staticmethod
    def _token_mask(batch: _Batch, entry: SketchedModule, tokens: int) -> torch.Tensor | None:
        if batch.mask is None:
            return None
        mask = batch.mask.reshape(batch.mask.shape[0], -1)
        if mask.shape[1] != tokens:
            raise InvalidInputError(f"mask has {mask.shape[1]} tokens per example but module {entry.module_name} "
                                    f"saw {tokens}")
        return (mask != 0)

    def _gradient_hook(self, entry: SketchedModule, batch: _Batch, state: _ModuleBatch,
                       kept: torch.Tensor) -> Callable[[torch.Tensor], None]:
        def hook(gradient: torch.Tensor) -> None:
            if not batch.open:
                return
            g = gradient.detach()
            g = g.reshape(g.shape[0], -1, g.shape[-1])                 # [B, T, n_out]
            scale = float(g.shape[0]) if self.loss_reduction == "mean" else 1.0
            if self.precondition is not None:
                g = g.to(self._accumulate_dtype) * scale
                # The per-example gradient in the weight's own layout.
                part = torch.bmm(kept.transpose(1, 2), g) if entry.transposed else torch.bmm(g.transpose(1, 2), kept)
            else:
                factor = (self._in_factor if entry.transposed else self._out_factor)(entry, g.device, self.compute_dtype)
                projected = torch.matmul(g.to(self.compute_dtype), factor.T)
                first, second = (kept, projected) if entry.transposed else (projected, kept)
                # Σ_t (out-side)ᵀ (in-side), accumulated in float32 whatever the compute dtype.
                part = torch.bmm(first.to(self._accumulate_dtype).transpose(1, 2), second.to(self._accumulate_dtype))
                if scale != 1.0:
                    part = part * scale
            state.sketch = part if state.sketch is None else state.sketch + part
            state.backwards += 1
        return hook

    def _finish_batch(self, batch: _Batch) -> torch.Tensor:
        blocks = []
        for entry in self.layout:
            state = batch.modules.get(entry.parameter)
            if state is None or state.sketch is None or state.backwards < state.forwards:
                forwards = 0 if state is None else state.forwards
                backwards = 0 if state is None else state.backwards
                raise InvalidStateError(
                    f"module {entry.module_name} received no gradient in this batch (forward passes {forwards}, "
                    f"gradients {backwards}): expected loss.backward() inside collector.batch(...) through every "
                    "sketched module; leave unused modules out with modules=...")
            sketch = state.sketch
            if self.precondition is not None:
                sketch = self._preconditioned_sketch(entry, sketch)
            blocks.append(sketch.reshape(sketch.shape[0], -1))
        return torch.cat(blocks, dim=1)

    def _preconditioned_sketch(self, entry: SketchedModule, gradients: torch.Tensor) -> torch.Tensor:
        """LESS's Adam feature of each per-example gradient, then ``P_out F P_inᵀ``."""
        weight = self._weights[entry.parameter]
        optimizer = self.precondition
        state = optimizer.state.get(weight, {})
        if "exp_avg" not in state or "exp_avg_sq" not in state:
            raise InvalidInputError(f"the optimizer has no Adam state (exp_avg, exp_avg_sq) for {entry.parameter}: "
                                    "expected an Adam/AdamW optimizer that has taken a step or loaded its state_dict")
        group = next(g for g in optimizer.param_groups if any(p is weight for p in g["params"]))
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        dtype = gradients.dtype
        m = state["exp_avg"].detach().to(device=gradients.device, dtype=dtype)
        v = state["exp_avg_sq"].detach().to(device=gradients.device, dtype=dtype)
        m_next = beta1 * m + (1 - beta1) * gradients
        v_next = beta2 * v + (1 - beta2) * gradients * gradients
        feature = m_next / torch.sqrt(v_next + eps)
        p_out = self._out_factor(entry, gradients.device, dtype)
        p_in = self._in_factor(entry, gradients.device, dtype)
        return torch.matmul(torch.matmul(p_out, feature), p_in.T)

    def _append(self, batch: _Batch, rows: torch.Tensor) -> None:
        examples = rows.shape[0]
        ids = batch.ids
        if ids is None:
            ids = [f"{self.rank}-{self._counter + i}" for i in range(examples)]
        self._counter += examples
        values = rows.detach().to("cpu", torch.float32).numpy().astype(_STORED_DTYPES[self.stored_dtype])
        arguments: dict[str, Any] = {"ids": ids}
        if batch.labels is not None:
            arguments["labels"] = list(batch.labels)
        if batch.metadata is not None:
            arguments["metadata"] = batch.metadata
        self._session.append(values, **arguments)
        self.rows_written += examples
