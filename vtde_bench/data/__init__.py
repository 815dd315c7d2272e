"""A task's data: its layouts (`layouts`), its rows in canonical form (`rows`: `TaskData` and the content
fingerprint), what each row holds besides its image (`targets`), loading (`load`) and fetching (`download`)."""

from vtde_bench.data.layouts import LAYOUTS, detect_layouts
from vtde_bench.data.load import bind_task, load_task_data
from vtde_bench.data.rows import TaskData, content_fingerprint

__all__ = ["LAYOUTS", "TaskData", "bind_task", "content_fingerprint", "detect_layouts", "load_task_data"]
