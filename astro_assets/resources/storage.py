"""Where the product's data lives, as a Dagster resource."""

import dagster as dg

from astro_assets.io.paths import DEFAULT_DATA_ROOT, DataLayout


class DataStore(dg.ConfigurableResource):
    """The data root (``$ASTRO_ASSETS_DATA``, default ``./data``) and its layout.

    Relative roots are resolved against the working directory of the process that runs the
    step, which is the directory ``dagster dev`` or the CLI was started in.
    """

    root: str = DEFAULT_DATA_ROOT

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.root)
