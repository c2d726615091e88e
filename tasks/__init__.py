"""Research programmes. Each module defines one `Task` subclass; this registry maps names to modules
and is the only place that lists them (imported lazily so a run pays only for its own programme)."""
import difflib
import importlib

TASK_MODULES = {
    "target_functions": "tasks.target_functions",
    "group_arithmetic": "tasks.group_arithmetic",
    "assoc_memory": "tasks.assoc_memory",
    "parity_cot": "tasks.parity_cot",
    "kg_reasoning": "tasks.kg_reasoning",
}


# programmes whose module adds notes below report.py's table (report_notes): the others need no import there
REPORT_NOTES = ("assoc_memory",)


class UnknownTask(ValueError):
    pass


def get(name):
    """The Task class registered under name."""
    if name not in TASK_MODULES:
        close = difflib.get_close_matches(str(name), TASK_MODULES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownTask(f"unknown task {name!r}; {hint}valid tasks: {', '.join(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[name]).Task
