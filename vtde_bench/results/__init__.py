"""Results: typed, versioned records (`records`), where they live on disk (`store`), rows imported from
other sources (`importers`), and the one DataFrame of them all (`frame`)."""

from vtde_bench.results.frame import COLUMNS, load_results, results_frame
from vtde_bench.results.importers import (PUBLISHED, ImportedResult, Importer, load_rows, published_results,
                                          read_task_results)
from vtde_bench.results.records import (OURS, SCHEMA_VERSION, DatasetRecord, ModelRecord, RunRecord, ScoreRow, TaskRecord,
                                        TaskResult)
from vtde_bench.results.store import find_existing, read_result, result_path, samples_path, write_result

__all__ = ["COLUMNS", "OURS", "PUBLISHED", "SCHEMA_VERSION", "DatasetRecord", "ImportedResult", "Importer", "ModelRecord", "RunRecord",
           "ScoreRow", "TaskRecord", "TaskResult", "find_existing", "load_results", "load_rows",
           "published_results", "read_result", "read_task_results", "result_path", "results_frame", "samples_path",
           "write_result"]
