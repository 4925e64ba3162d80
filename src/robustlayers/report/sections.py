"""Report sections around the analyses: models, evaluation, training runs, setup records."""

from __future__ import annotations

from robustlayers.report.tables import fmt, key_values, pct, table

ATTACK_FIELDS = ("eps", "steps", "alpha", "restarts", "random_start", "loss", "version")


def models_body(diagnosis: dict) -> str:
    """Label, class, size, source, input normalisation and dataset of each model."""
    rows = []
    for label, info in diagnosis.get("models_info", {}).items():
        norm = info.get("normalization") or {}
        context = info.get("data_context") or {}
        normalisation = (f"{norm.get('convention')} ({norm.get('source')}): mean "
                         f"{norm.get('mean')}, std {norm.get('std')}" if norm else "—")
        rows.append([label, info.get("class"), info.get("params"), info.get("source") or "—",
                     normalisation, context.get("dataset") or "—"])
    return table(["model", "class", "parameters", "source", "input normalisation", "dataset"],
                 rows)


def evaluation_body(evaluation: dict | None) -> str:
    """Clean and per-attack accuracy (loss) of each model, and the worst case over attacks."""
    if not evaluation:
        return ('<p class="note">No evaluation results were given (pass them to diagnose, '
                'e.g. `robustlayers diagnose --evaluation FILE` with records of '
                '`robustlayers evaluate --out FILE`).</p>')
    attacks = list(dict.fromkeys(a for rec in evaluation.values() for a in rec.get("attacks", {})))
    rows = []
    for label, rec in evaluation.items():
        row = [label, rec.get("n") or rec.get("clean", {}).get("n"),
               _cell(rec.get("clean"))]
        row += [_cell(rec.get("attacks", {}).get(a)) for a in attacks]
        row.append(_cell(rec.get("worst_case")) if rec.get("attacks") else None)
        rows.append(row)
    out = table(["model", "images", "clean"] + attacks + ["worst case"], rows)
    configs: dict[str, list] = {}
    for label, rec in evaluation.items():
        for name, result in rec.get("attacks", {}).items():
            text = describe_attack(result.get("config", {}))
            if text not in configs.setdefault(name, []):
                configs[name].append(text)
    out += table(["attack", "configuration"], [[a, "; ".join(c)] for a, c in configs.items()])
    return out + ('<p class="note">Cells: accuracy (mean cross-entropy loss). Worst case: an '
                  'image counts as robust only if every attack and the clean input are '
                  'classified correctly.</p>')


def _cell(entry: dict | None) -> str | None:
    if not entry:
        return None
    loss = entry.get("loss")
    return pct(entry.get("accuracy")) + (f" ({loss:.3f})" if loss is not None else "")


def describe_attack(config: dict) -> str:
    """``pgd: eps=0.1 (25.5/255), steps=10, alpha=0.01, ...`` from an attack's config."""
    if not isinstance(config, dict):
        return fmt(config)
    parts = []
    for key in ATTACK_FIELDS:
        if config.get(key) is not None:
            value = config[key]
            if isinstance(value, bool):
                value = "yes" if value else "no"
            elif key == "eps" and config.get("eps_over_255") is not None:
                value = f"{fmt(value)} ({fmt(config['eps_over_255'])}/255)"
            parts.append(f"{key}={fmt(value)}")
    name = config.get("name", "attack")
    norm = f" {config['norm']}" if config.get("norm") else ""
    return f"{name}{norm}: " + ", ".join(parts) if parts else f"{name}{norm}"


def training_body(training: dict | None, figure: str) -> str:
    """Per-run epochs, best and last test robust accuracy, from the runs' metrics rows."""
    if not training:
        return '<p class="note">The models do not come from training runs.</p>'
    rows = []
    for label, metrics in training.items():
        if not metrics:
            rows.append([label, 0, None, None, None, None, None])
            continue
        best = [r for r in metrics if r.get("best")]
        best = best[-1] if best else metrics[-1]
        last = metrics[-1]
        gap = (None if best.get("test_robust_acc") is None or last.get("test_robust_acc") is None
               else best["test_robust_acc"] - last["test_robust_acc"])
        rows.append([label, last.get("epoch"), best.get("epoch"), pct(best.get("test_robust_acc")),
                     pct(last.get("test_robust_acc")), pct(gap) if gap is not None else None,
                     pct(last.get("test_clean_acc"))])
    return figure + table(["run", "epochs", "best epoch", "test robust (best)",
                           "test robust (last)", "best − last", "test clean (last)"], rows)


def setup_body(diagnosis: dict) -> str:
    """Settings, the attack and selection of every analysis and model, and the versions."""
    timing = diagnosis.get("timing_s") or {}
    data = diagnosis.get("data") or {}
    eps = diagnosis.get("eps") or {}
    out = key_values([
        ["seed", diagnosis.get("seed")],
        ["ε", f"{fmt(eps.get('value'))} ({fmt(eps.get('over_255'))}/255)" if eps else "—"],
        ["selection", diagnosis.get("selection") or "analysis defaults"],
        ["data", f"{data.get('dataset') or 'given tensors'} {data.get('split') or ''}: "
                 f"{data.get('n_examples')} of {data.get('subset_of')} images "
                 f"(subset seed {data.get('subset_seed')})"],
        ["created", diagnosis.get("created")],
        ["time per analysis", ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()) or "—"]])
    rows = []
    for key, section in diagnosis.get("analyses", {}).items():
        for label, entry in section.get("models", {}).items():
            rows.extend(_attack_rows(key, label, entry))
    out += "<h3>Attack and selection records</h3>" + table(
        ["analysis", "model", "attack", "layers (selection)", "seed"], rows)
    env = diagnosis.get("environment") or {}
    return out + "<h3>Versions</h3>" + key_values([[k, v] for k, v in env.items()])


def _attack_rows(analysis: str, label: str, entry: dict) -> list[list]:
    rows = []
    for part, sub in (("", entry), (" (full batch)", entry.get("criticality")),
                      (" (stability)", entry.get("stability"))):
        if not isinstance(sub, dict) or "attack" not in sub:
            continue
        selection = sub.get("selection") or {}
        layers = (f"{len(selection.get('names', []))} layers ({selection.get('expression')})"
                  if selection else "—")
        rows.append([analysis + part, label, describe_attack(sub["attack"]), layers,
                     sub.get("seed")])
    for name, attack in (entry.get("attacks") or {}).items():
        rows.append([f"{analysis} ({name})", label, describe_attack(attack.get("attack", {})),
                     "—", entry.get("seed")])
    return rows
