"""Deterministic workflow code only: no I/O and no heavy imports here."""

from docpipe.workflows.document_pipeline import DocumentPipelineWorkflow
from docpipe.workflows.ingest_csv import IngestCsvWorkflow

WORKFLOWS = [DocumentPipelineWorkflow, IngestCsvWorkflow]

__all__ = ["WORKFLOWS", "DocumentPipelineWorkflow", "IngestCsvWorkflow"]
