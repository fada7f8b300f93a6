from mesh.process import run_service
from shipping.bootstrap import bootstrap
from shipping.settings import ShippingSettings

if __name__ == "__main__":
    run_service("shipping", ShippingSettings, bootstrap)
