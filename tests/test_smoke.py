def test_signup_login_and_get_self(shutter):
    alice = shutter.account("alice")
    response = shutter.get("/v1/users/self", alice)
    assert response.status_code == 200, response.json
    assert response.json["data"]["username"] == "alice"
    assert response.json["data"]["counts"] == {"media": 0, "follows": 0, "followed_by": 0}
