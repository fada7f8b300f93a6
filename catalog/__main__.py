from catalog.bootstrap import bootstrap
from catalog.settings import CatalogSettings
from mesh.process import run_service

if __name__ == "__main__":
    run_service("catalog", CatalogSettings, bootstrap)
