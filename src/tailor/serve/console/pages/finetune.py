"""Console page: fine-tune. A form for ``POST /v1/fine_tuning/jobs`` (training and validation files, base model,
method, the hyperparameters worth showing, suffix) with the defaults the API would use, and the job's time
estimate from ``POST /v1/fine_tuning/jobs/estimate`` as the form changes."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from tailor.catalog import CATALOG
from tailor.data.files import CHAT as CHAT_FILE
from tailor.jobs.spec import CHAT, CLASSIFICATION, ZERO_SHOT, JobCreate, TailorOptions, resolve_training
from tailor.serve.console.render import SignedIn, language_param
from tailor.serve.routes import files as files_api

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language_param)])
PreselectedFile = Annotated[str | None, Query(max_length=64, description="preselected training file")]
# a classifier's methods are the job spec's that train on a file (so the form offers what the API accepts; a
# zero_shot job has no training file and is made through the API), a chat model's LoRA
METHODS = {CLASSIFICATION: tuple(m for m in get_args(TailorOptions.model_fields["method"].annotation)
                                 if m != ZERO_SHOT), CHAT: ("lora",)}


def task_of_file(kind: str) -> str:
    return CHAT if kind == CHAT_FILE else CLASSIFICATION


def bases_for(task: str) -> list[dict]:
    """The catalog's bases that train on ``task``'s files, in catalog order."""
    wanted = "chat" if task == CHAT else "classify"
    return [{"id": b.id, "task": task, "description": b.description} for b in CATALOG.values() if b.task == wanted]


def defaults_for(task: str) -> dict:
    """What the API uses when a hyperparameter is ``auto``: epochs, batch size, and each method's learning rate
    (the multiplier's 1), from the job spec's own resolution of an empty request."""
    model = bases_for(task)[0]["id"]
    defaults: dict = {"learning_rate": {}}
    for method in METHODS[task]:
        body = JobCreate(model=model, method={"tailor": {"method": method}})
        hyperparameters, overrides = resolve_training(body, task)
        defaults.update(n_epochs=hyperparameters["n_epochs"], batch_size=hyperparameters["batch_size"])
        defaults["learning_rate"][method] = next(overrides[k] for k in ("lora_lr", "contrastive_lr", "lr")
                                                 if k in overrides)
    return defaults


@router.get("/finetune")
async def finetune_page(page: SignedIn, file: PreselectedFile = None) -> Response:
    """The form; ``?file=`` preselects a training file (another tenant's is a 404 page)."""
    if file:
        await page.call(files_api.get_file, file, page.principal, page.services)
    found = await page.call(files_api.list_files, page.principal, page.services, purpose="fine-tune", limit=100)
    files = [{"id": f["id"], "filename": f["filename"], "kind": f["kind"], "task": task_of_file(f["kind"])}
             for f in found["data"]]
    selected = next((f for f in files if f["id"] == file), files[0] if files else None)
    task = selected["task"] if selected else CLASSIFICATION
    catalog = {t: {"bases": bases_for(t), "methods": list(METHODS[t]), "defaults": defaults_for(t)}
               for t in (CLASSIFICATION, CHAT)}
    return page.render("finetune.html", title=page.t("finetune.title"), active="finetune", files=files,
                       selected=selected, task=task, options=catalog[task], catalog=catalog,
                       can_train=page.allows("train"))
