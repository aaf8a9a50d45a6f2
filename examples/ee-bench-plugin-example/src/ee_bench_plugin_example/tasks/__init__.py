"""Task YAML files of the example plug-in (entry-point group ``ee_bench.tasks``).

ee-bench imports this package only to find its folder; every ``*.yaml`` below it is indexed, and
files named in ``dataset_kwargs.data_files`` are read relative to the YAML.
"""
