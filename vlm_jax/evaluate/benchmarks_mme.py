"""MME benchmark readers (Fu et al. 2023): the release folder and the eval_tool txt files.

Release layout (``MME_Benchmark_release_version/<subtask>/``): artwork, celebrity, landmark,
posters and scene keep ``images/<name>.jpg`` and ``questions_answers_YN/<name>.txt``; the other
subtasks keep ``<name>.jpg|png`` beside ``<name>.txt``. Each txt holds one "question<TAB>Yes|No"
line per question (two per image). The eval_tool format has one ``<subtask>.txt`` per subtask with
"image_name<TAB>question<TAB>answer[<TAB>prediction]" lines.

Records: question_id "<subtask>/<image name>/<k>", answers ("yes",) or ("no",), extra
{"category": subtask, "image_name": name} (the keys ``mme_scores`` groups by).
"""

from __future__ import annotations

import os

from vlm_jax.evaluate.benchmark_records import SHORT_ANSWER, BenchmarkRecord, PromptFormat
from vlm_jax.evaluate.yes_no_metrics import MME_COGNITION, MME_PERCEPTION

_IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")
_SPLIT_FOLDER_SUBTASKS = ("artwork", "celebrity", "landmark", "posters", "scene")


def _tab_fields(line: str, counts: tuple[int, ...], answer_index: int, where: str,
                layout: str) -> list[str]:
    fields = [field.strip() for field in line.rstrip("\r\n").split("\t")]
    if len(fields) not in counts:
        raise ValueError(f"{where}: expected '{layout}', got {len(fields)} tab-separated field(s)")
    if fields[answer_index].lower() not in ("yes", "no"):
        raise ValueError(f"{where}: the answer must be Yes or No in '{layout}'")
    return fields


def _subtask_dirs(root: str, subtask: str) -> tuple[str, str]:
    """(folder of the question txt files, folder of the images) of one subtask of the release."""
    folder = os.path.join(root, subtask)
    if subtask in _SPLIT_FOLDER_SUBTASKS:
        return os.path.join(folder, "questions_answers_YN"), os.path.join(folder, "images")
    return folder, folder


def _record(subtask: str, name: str, k: int, image: str, question: str, answer: str,
            extra: dict, prompt: PromptFormat) -> BenchmarkRecord:
    return BenchmarkRecord(
        question_id=f"{subtask}/{name}/{k}", image=image, question=question,
        prompt=prompt(question), answers=(answer.lower(),),
        extra={"category": subtask, "image_name": name, **extra})


def read_mme(root: str, prompt: PromptFormat = SHORT_ANSWER) -> list[BenchmarkRecord]:
    """All questions of the official subtasks present under the MME release folder ``root``."""
    subtasks = [s for s in MME_PERCEPTION + MME_COGNITION if os.path.isdir(os.path.join(root, s))]
    if not subtasks:
        raise ValueError(f"{root}: no MME subtask folder found (expected some of "
                         f"{MME_PERCEPTION + MME_COGNITION})")
    records = []
    for subtask in subtasks:
        txt_dir, image_dir = _subtask_dirs(root, subtask)
        for txt in sorted(f for f in os.listdir(txt_dir) if f.endswith(".txt")):
            stem = txt[:-4]
            images = [stem + e for e in _IMAGE_EXTENSIONS
                      if os.path.isfile(os.path.join(image_dir, stem + e))]
            if not images:
                raise FileNotFoundError(f"{os.path.join(txt_dir, txt)}: no image {stem}"
                                        f"{{{','.join(_IMAGE_EXTENSIONS)}}} in {image_dir}")
            txt_path = os.path.join(txt_dir, txt)
            with open(txt_path, encoding="utf-8") as f:
                lines = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]
            for k, (n, line) in enumerate(lines):
                question, answer = _tab_fields(line, (2,), 1, f"{txt_path}:{n}", "question\tanswer")
                records.append(_record(subtask, images[0], k, os.path.join(image_dir, images[0]),
                                       question, answer, {}, prompt))
    return records


def read_mme_txt(txt_dir: str, image_root: str | None = None,
                 prompt: PromptFormat = SHORT_ANSWER) -> list[BenchmarkRecord]:
    """Questions from eval_tool-style ``<subtask>.txt`` files in ``txt_dir`` (a fourth column, a
    model's reply, goes to ``extra["prediction"]``). Image paths are resolved against the release
    folder ``image_root`` when given, else left as the bare image names."""
    subtasks = [s for s in MME_PERCEPTION + MME_COGNITION
                if os.path.isfile(os.path.join(txt_dir, f"{s}.txt"))]
    if not subtasks:
        raise ValueError(f"{txt_dir}: no <subtask>.txt file of an MME subtask found")
    records = []
    for subtask in subtasks:
        txt_path = os.path.join(txt_dir, f"{subtask}.txt")
        image_dir = _subtask_dirs(image_root, subtask)[1] if image_root else None
        seen: dict[str, int] = {}
        with open(txt_path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                fields = _tab_fields(line, (3, 4), 2, f"{txt_path}:{n}",
                                     "image_name\tquestion\tanswer[\tprediction]")
                name, question, answer = fields[:3]
                k = seen[name] = seen.get(name, -1) + 1
                extra = {"prediction": fields[3]} if len(fields) == 4 else {}
                image = os.path.join(image_dir, name) if image_dir else name
                records.append(_record(subtask, name, k, image, question, answer, extra, prompt))
    return records
