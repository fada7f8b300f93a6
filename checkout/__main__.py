from checkout.bootstrap import bootstrap
from checkout.settings import CheckoutSettings
from mesh.process import run_service

if __name__ == "__main__":
    run_service("checkout", CheckoutSettings, bootstrap)
