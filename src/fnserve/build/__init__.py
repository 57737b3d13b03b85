"""``fnserve build`` and ``fnserve start --from`` (SPEC §8, §8.2; issue 11; docs/DEPLOY.md).

Public API::

    output.build_output(config, *, out=None, targets=("fnserve",), say=None, environ=None, force=False)
        -> BuildResult       write the target-neutral output (default <project>/.fnserve/output)
    manifest.read_manifest(output) -> Manifest          refuses unknown formats (OutputFormatError)
    manifest.project_from_manifest(manifest, project_dir) -> Project   the model, without a scan
    serve.FromOutputServer(output, overrides)            fnserve start --from (server.start calls it)
    targets.TARGETS                                      target name → Target class

Modules: ``collect`` (work copy, file selection), ``report`` (sizes), ``exceptions``
(``BuildError``, ``OutputFormatError``), ``targets/`` (one module per engine as they come).
"""
