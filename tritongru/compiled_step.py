"""What one timestep of a compiled kernel executes, read from its SASS and TTGIR.

The persistent kernels spend their time in one loop over timesteps. Its cost is written in the
machine code: how many bytes each warp moves through shared memory (``LDSM``, ``LDS``, ``STS``),
how many tensor-core instructions it issues and how long the longest chain of dependent ones is,
which global loads, stores and atomics it makes, and how often the warps of a program wait for one
another. This module finds that loop in the SASS and counts it; :mod:`tritongru.cost_model` turns
the counts into time.

Counting conventions (the model's, stated once):

* The time loop is the outermost loop of the SASS whose body holds a tensor-core instruction. Its
  body is counted once per step: one tile per program (the planner's grids), and every wait loop
  inside it once, so a wait costs the poll before its loop and one more inside (a reader usually
  arrives before the last producer's store, so its first poll finds a stale word). Both sides of a
  run-time branch are counted (the kernels branch at run time only around scalar bookkeeping), so
  a stack's wait for the layer reading its ring, which runs about one step in ``RING_SLOTS - 2``
  (never in training), counts every step: an upper bound; so does the second poll of its flags
  released by the layer below, which runs ahead and has usually released them already.
* Every warp of a program executes the same instructions, so per-SM figures are per-warp figures
  times the number of warps. A predicated-off instruction still counts: it is issued.
* Shared-memory bytes are what the instructions move: ``LDSM.x4`` 512 B a warp, ``LDS.128`` 32
  threads x 16 B, and so on.

Replication is read from the TTGIR instead: a dot whose result is smaller than its layout's tile
(warps x instruction shape) has warps computing the same output again (:func:`dot_layouts`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter

# --------------------------------------------------------------------------------------------------
# SASS


@dataclasses.dataclass(frozen=True)
class Instruction:
    address: int
    predicate: str  # "@P0", "@!PT", or ""
    opcode: str  # with its modifiers: "LDSM.16.M88.4"
    operands: tuple[str, ...]

    @property
    def base(self) -> str:
        return self.opcode.split(".", 1)[0]

    @property
    def modifiers(self) -> tuple[str, ...]:
        return tuple(self.opcode.split(".")[1:])

    def branch_target(self) -> int | None:
        return self._address() if self.base in ("BRA", "BRX", "JMP") else None

    def jump_target(self) -> int | None:
        """Where control may go besides the next instruction: a branch's target, or a
        ``CALL.REL.NOINC``'s, which ptxas (sm_80) uses as the conditional way out of a loop whose
        branch back is unconditional."""
        return self._address() if self.base == "CALL" else self.branch_target()

    def _address(self) -> int | None:
        targets = [operand for operand in self.operands if re.fullmatch(r"0x[0-9a-f]+", operand)]
        return int(targets[-1], 16) if targets else None


_LINE = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
# sm_120 listings annotate instructions with their scoreboard dependences and scheduling hints
# (``&req={0}``, ``?WAIT15_END_GROUP``, ``?trans5``) before the semicolon: not operands.
_ANNOTATION = re.compile(r"\s+(?:&\w+=\{[^}]*\}|\?\w+)")


def parse_sass(text: str) -> list[Instruction]:
    """The instructions of one kernel's ``cuobjdump -sass`` listing, in address order."""
    instructions = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        address, body = int(match.group(1), 16), _ANNOTATION.sub("", match.group(2)).strip()
        predicate = ""
        if body.startswith("@"):
            predicate, body = body.split(None, 1)
        opcode, _, rest = body.partition(" ")
        operands = tuple(part.strip() for part in _split_operands(rest)) if rest.strip() else ()
        instructions.append(Instruction(address, predicate, opcode, operands))
    return instructions


def _split_operands(text: str) -> list[str]:
    """Split at the commas that are not inside brackets (``desc[UR4][R2.64]`` is one operand)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def loops(instructions: list[Instruction]) -> list[tuple[int, int]]:
    """``(first, last)`` instruction indices of every loop: a branch back to an earlier address."""
    index_of = {inst.address: i for i, inst in enumerate(instructions)}
    found = []
    for i, inst in enumerate(instructions):
        target = inst.branch_target()
        if target is not None and target <= inst.address and target in index_of:
            found.append((index_of[target], i))
    return found


MMA_BASES = ("HMMA", "HGMMA", "DMMA", "IMMA")


def time_loop(instructions: list[Instruction]) -> tuple[int, int]:
    """The outermost loop whose body holds a tensor-core instruction: the loop over timesteps.

    Outermost by its body, the instructions between its head and its branch back that lead to that
    branch, not by its span: ptxas places rarely taken blocks (a warp-collective's fallback, say)
    after the kernel's end, each branching back into the loop it left, and the span of such a
    branch takes in whatever lies between, the code that runs once after the time loop included."""
    predecessors = _predecessors(instructions)
    bodies = {span: _loop_body(predecessors, *span) for span in loops(instructions)}
    with_mma = [span for span, body in bodies.items() if any(instructions[i].base in MMA_BASES for i in body)]
    if not with_mma:
        raise ValueError("no loop of this kernel holds a tensor-core instruction: no time loop to count")
    first, last = max(with_mma, key=lambda span: len(bodies[span]))
    # Nothing loops around the steps: a branch back from beyond them to before them closes a loop
    # whose body this reader could not follow (a control transfer it does not know).
    around = [(lo, hi) for lo, hi in bodies if lo < first and last < hi]
    if around:
        lo, hi = around[0]
        raise ValueError(
            f"the loop at {instructions[lo].address:#x}-{instructions[hi].address:#x} encloses the time loop read at "
            f"{instructions[first].address:#x}-{instructions[last].address:#x}, but its body could not be followed "
            f"(a control transfer this reader does not know): no step to count"
        )
    return first, last


def _falls_through(inst: Instruction) -> bool:
    """Whether the next instruction may run after ``inst``: all but an unpredicated exit, return or
    jump. ``BRA.DIV`` and ``BRA.CONV`` branch only where the warp has diverged (or converged), and
    sm_120's ``BRA.U UP1, target`` takes its predicate as an operand."""
    if inst.predicate not in ("", "@PT") or inst.base not in ("EXIT", "RET", "BRA", "JMP"):
        return True
    if any(re.fullmatch(r"!?U?P[0-6]", operand) for operand in inst.operands):
        return True
    return inst.base == "BRA" and bool({"DIV", "CONV"} & set(inst.modifiers))


def _predecessors(instructions: list[Instruction]) -> dict[int, list[int]]:
    """For each instruction's index, the indices control may come to it from."""
    index_of = {inst.address: i for i, inst in enumerate(instructions)}
    predecessors: dict[int, list[int]] = {}
    for i, inst in enumerate(instructions):
        if i + 1 < len(instructions) and _falls_through(inst):
            predecessors.setdefault(i + 1, []).append(i)
        target = index_of.get(inst.jump_target())
        if target is not None:
            predecessors.setdefault(target, []).append(i)
    return predecessors


def _loop_body(predecessors: dict[int, list[int]], first: int, last: int) -> set[int]:
    """The indices in ``first .. last`` from which the branch back at ``last`` is reached without
    passing the loop's head ``first``."""
    body, pending = {first, last}, [last]
    while pending:
        for previous in predecessors.get(pending.pop(), ()):
            if first <= previous <= last and previous not in body:
                body.add(previous)
                pending.append(previous)
    return body


# Bytes one thread moves with a load or store of each width modifier (none: 32 bits).
_WIDTH = {"U8": 1, "S8": 1, "U16": 2, "S16": 2, "64": 8, "128": 16}
# Bytes one warp moves with ``ldmatrix`` / ``stmatrix``: 8x8 16-bit matrices, 1, 2 or 4 of them.
_MATRIX_BYTES = 128


def access_bytes(inst: Instruction) -> int:
    """Bytes one warp moves through memory with ``inst`` (0 for an instruction that moves none)."""
    if inst.base in ("LDSM", "STSM"):
        count = int(inst.modifiers[-1]) if inst.modifiers[-1] in ("2", "4") else 1
        return count * _MATRIX_BYTES
    widths = [_WIDTH[m] for m in inst.modifiers if m in _WIDTH]
    return 32 * (widths[0] if widths else 4)


@dataclasses.dataclass
class StepCounts:
    """One warp's work in one pass over the time loop."""

    instructions: int = 0
    shared_read: Counter = dataclasses.field(default_factory=Counter)  # opcode -> bytes
    shared_written: Counter = dataclasses.field(default_factory=Counter)
    mma: Counter = dataclasses.field(default_factory=Counter)  # opcode -> instructions
    mma_chain: int = 0  # the longest chain of dependent tensor-core instructions
    global_loads: Counter = dataclasses.field(default_factory=Counter)  # opcode -> bytes
    global_stores: Counter = dataclasses.field(default_factory=Counter)
    atomics: Counter = dataclasses.field(default_factory=Counter)  # opcode -> instructions
    cta_barriers: int = 0
    fences: int = 0
    wait_loops: int = 0  # loops inside the time loop without tensor-core work (polls)
    spill_accesses: int = 0  # LDL / STL

    @property
    def shared_read_bytes(self) -> int:
        return sum(self.shared_read.values())

    @property
    def shared_written_bytes(self) -> int:
        return sum(self.shared_written.values())

    @property
    def mma_instructions(self) -> int:
        return sum(self.mma.values())

    @property
    def mma_flops(self) -> int:
        return sum(count * mma_flops(opcode) for opcode, count in self.mma.items())

    @property
    def global_load_bytes(self) -> int:
        return sum(self.global_loads.values())

    @property
    def global_store_bytes(self) -> int:
        return sum(self.global_stores.values())


def mma_flops(opcode: str) -> int:
    """Floating-point operations of one warp's tensor-core instruction, from its shape modifier
    (``HMMA.16816`` is m16 n8 k16: 2 x 16 x 8 x 16)."""
    shapes = {"16816": (16, 8, 16), "1688": (16, 8, 8), "884": (8, 8, 4), "16832": (16, 8, 32)}
    for modifier in opcode.split(".")[1:]:
        if modifier in shapes:
            m, n, k = shapes[modifier]
            return 2 * m * n * k
    if opcode.startswith("HGMMA"):
        match = re.search(r"64x(\d+)x(\d+)", opcode)
        if match:
            return 2 * 64 * int(match.group(1)) * int(match.group(2)) // 4  # per warp of the group
    raise ValueError(f"unknown tensor-core instruction shape in {opcode}")


def count_step(instructions: list[Instruction], span: tuple[int, int] | None = None, product_trips: int = 1) -> StepCounts:
    """Count one warp's pass over ``span`` (default: :func:`time_loop`).

    ``product_trips``: how often the innermost loops that hold tensor-core work run per pass (the
    loop over chunks of weights re-read every step, ``NUM_K`` times); their instructions count
    that often, and the dependent chain through them that many times longer."""
    first, last = span if span is not None else time_loop(instructions)
    body = instructions[first : last + 1]
    inner = [
        (lo, hi) for lo, hi in loops(instructions)
        if first <= lo and hi <= last and (lo, hi) != (first, last) and _holds_mma(instructions, lo, hi)
    ]
    innermost = [(lo, hi) for lo, hi in inner if not any((a, b) != (lo, hi) and lo <= a and b <= hi for a, b in inner)]
    counts = StepCounts()
    for index, inst in enumerate(body, start=first):
        times = product_trips if any(lo <= index <= hi for lo, hi in innermost) else 1
        counts.instructions += times
        base = inst.base
        if base in ("LDSM", "LDS"):
            counts.shared_read[inst.opcode] += times * access_bytes(inst)
        elif base in ("STS", "STSM"):
            counts.shared_written[inst.opcode] += times * access_bytes(inst)
        elif base in MMA_BASES:
            counts.mma[inst.opcode] += times
        elif base == "LDG":
            counts.global_loads[inst.opcode] += times * access_bytes(inst)
        elif base == "STG":
            counts.global_stores[inst.opcode] += times * access_bytes(inst)
        elif base in ("ATOMG", "ATOM", "RED", "REDG"):
            counts.atomics[inst.opcode] += times
            if "EXCH" in inst.modifiers:
                # Tagged words are published by atomic exchange (a strong store): they cross L2.
                counts.global_stores[inst.opcode] += times * access_bytes(inst)
        elif base == "BAR":
            counts.cta_barriers += times
        elif base == "MEMBAR":
            counts.fences += times
        elif base in ("LDL", "STL"):
            counts.spill_accesses += times
    counts.wait_loops = sum(
        1 for lo, hi in loops(instructions)
        if first <= lo and hi <= last and (lo, hi) != (first, last) and not _holds_mma(instructions, lo, hi)
    )
    counts.mma_chain = mma_chain(body) * (product_trips if innermost else 1)
    return counts


def _holds_mma(instructions: list[Instruction], lo: int, hi: int) -> bool:
    return any(inst.base in MMA_BASES for inst in instructions[lo : hi + 1])


# --------------------------------------------------------------------------------------------------
# Dependent tensor-core chains

_REGISTER = re.compile(r"\bR(\d+)\b")
# Instructions whose first operand is read, not written.
_NO_DESTINATION = {"STS", "STG", "STL", "STSM", "RED", "REDG", "BAR", "BRA", "MEMBAR", "EXIT", "NOP", "BSYNC",
                   "BSSY", "WARPSYNC", "ERRBAR", "CGAERRBAR", "CCTL", "DEPBAR", "YIELD", "RET", "CALL"}


def _registers(operand: str, width: int = 1) -> list[int]:
    """The registers an operand names: ``width`` consecutive ones from a register operand, or the
    address registers inside ``[...]``."""
    if "[" in operand:
        return [int(r) for r in _REGISTER.findall(operand)]
    match = _REGISTER.search(operand)
    return list(range(int(match.group(1)), int(match.group(1)) + width)) if match else []


def _data_width(inst: Instruction) -> int:
    """Registers one thread's data spans in a load or store (``.64``: 2, ``.128``: 4)."""
    wide = [_WIDTH[m] for m in inst.modifiers if m in ("64", "128")]
    return wide[0] // 4 if wide else 1


def _written_and_read(inst: Instruction) -> tuple[list[int], list[int]]:
    operands = inst.operands
    if inst.base in _NO_DESTINATION:
        widths = [1] * (len(operands) - 1) + [_data_width(inst)]
        return [], [r for operand, width in zip(operands, widths) for r in _registers(operand, width)]
    if inst.base in MMA_BASES:
        # D, A, B, C: the fp32 accumulator spans 4 registers (2 for an fp16 one), A 4 and B 2.
        accumulator = 2 if inst.modifiers[1:2] == ("F16",) else 4
        widths = [accumulator, 4, 2, accumulator]
    elif inst.base in ("LDSM", "STSM"):
        widths = [int(inst.modifiers[-1]) if inst.modifiers[-1] in ("2", "4") else 1]
    else:
        widths = [_data_width(inst)]
    widths += [1] * (len(operands) - len(widths))
    written = _registers(operands[0], widths[0]) if "[" not in operands[0] else []
    read = [r for operand, width in zip(operands[1:], widths[1:]) for r in _registers(operand, width)]
    return written, read


def mma_chain(body: list[Instruction]) -> int:
    """The longest chain of tensor-core instructions in ``body`` where each depends on the one
    before through registers (the accumulator, or an operand computed from an earlier result)."""
    depth: dict[int, int] = {}
    longest = 0
    for inst in body:
        if not inst.operands:
            continue
        written, read = _written_and_read(inst)
        level = max((depth.get(r, 0) for r in read), default=0)
        if inst.base in MMA_BASES:
            level += 1
            longest = max(longest, level)
        for r in written:
            depth[r] = level
    return longest


# --------------------------------------------------------------------------------------------------
# TTGIR: the layouts of the dots


@dataclasses.dataclass(frozen=True)
class DotLayout:
    """One ``tt.dot`` (or wgmma) of a kernel: its result shape and the layout the compiler gave it."""

    shape: tuple[int, ...]
    version: int  # 2: mma.sync, 3: wgmma
    warps_per_cta: tuple[int, ...]
    instr_shape: tuple[int, ...]

    @property
    def warp_tile(self) -> tuple[int, ...]:
        """The output one warp's instruction covers in each dimension."""
        # mma.sync gives one entry per result dimension ([16, 8], or [1, 16, 8] for a rank-3 dot);
        # wgmma gives [M, N, K] for a rank-2 result.
        return tuple(self.instr_shape[: len(self.shape)])

    @property
    def replication(self) -> int:
        """How many warps compute each output element: 1 unless the layout's tile (warps x
        instruction shape) is larger than the result, when the extra warps repeat the work."""
        return math.prod(
            max(1, warps * tile // size) for warps, tile, size in zip(self.warps_per_cta, self.warp_tile, self.shape)
        )


_ALIAS = re.compile(r"^(#[\w]+) = #ttg\.nvidia_mma<\{(.*)\}>", re.MULTILINE)
_DOT = re.compile(r"= (?:tt\.dot|ttng\.warp_group_dot) .*?-> tensor<([0-9x]+)x\w+, (#[\w]+)>")


def _int_list(text: str, name: str) -> tuple[int, ...]:
    match = re.search(name + r" = \[([0-9, ]+)\]", text)
    if match is None:
        raise ValueError(f"no {name} in layout {text!r}")
    return tuple(int(v) for v in match.group(1).split(","))


def dot_layouts(ttgir: str) -> list[DotLayout]:
    """Every dot of a kernel's TTGIR with its result layout (in program order)."""
    aliases = {}
    for name, body in _ALIAS.findall(ttgir):
        version = int(re.search(r"versionMajor = (\d+)", body).group(1))
        aliases[name] = (version, _int_list(body, "warpsPerCTA"), _int_list(body, "instrShape"))
    found = []
    for shape, alias in _DOT.findall(ttgir):
        if alias not in aliases:
            raise ValueError(f"dot result layout {alias} is not an nvidia_mma layout of this TTGIR")
        version, warps, instr = aliases[alias]
        found.append(DotLayout(tuple(int(v) for v in shape.split("x")), version, warps, instr))
    return found
