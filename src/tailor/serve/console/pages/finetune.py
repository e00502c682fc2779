"""Console page: finetune (being written)."""

from fastapi import APIRouter

router = APIRouter()
