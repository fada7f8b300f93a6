from mesh.process import run_service
from order.bootstrap import bootstrap
from order.settings import OrderSettings

if __name__ == "__main__":
    run_service("order", OrderSettings, bootstrap)
